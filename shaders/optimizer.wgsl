// Optimizer updates, in place on the parameters w, from their gradient g.
//   sgd_update:      w −= lr · g
//   momentum_update: v = μ · v + g;  w −= lr · v                          (PyTorch's form)
//   adam_update:     m = β1 m + (1 − β1) g;  v = β2 v + (1 − β2) g²;
//                    w −= lr · m̂ / (√v̂ + ε),  m̂ = m / (1 − β1^t), v̂ = v / (1 − β2^t)
//   adamw_update:    adam_update, and w −= lr · λ · w first (decoupled weight decay)
//   optimizer_advance: β1^t *= β1, β2^t *= β2 in the settings row: one step; run it once per
//                    step before the updates. The powers are kept, not computed with pow():
//                    1 − pow(β2, t) cancels most digits, and a GPU's pow is only a few ULP.
// The settings live in a GPU row, not in the uniform, so the learning rate can change between
// steps with one small write and many steps can share one submit:
//   settings = [lr, μ, β1, β2, ε, λ, β1^t, β2^t, then loss.wgsl's watch: steps, halted, …]
// settings[HALTED] != 0 means a step's loss was not finite (loss.wgsl's watch_loss marks it):
// every update and advance then leaves everything as it is, so the weights stay the last
// finite ones until the host has reported the divergence and cleared the mark.
//
// Bindings (group 0), in three layouts that share the first four:
//   0 p:        Params, uniform
//   1 settings: (1, 12), read-only
//   2 g:        (len), read-only
//   3 w:        (len), read-write; for optimizer_advance it is the settings row itself
//   4 m:        (len), read-write; momentum's velocity, Adam's first moment
//   5 v:        (len), read-write; Adam's second moment
// Grid: one invocation per parameter, workgroups of 256 folded into (x, y);
// optimizer_advance: one workgroup.

struct Params {
    len: u32,
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> settings: array<f32, 12>;
@group(0) @binding(2) var<storage, read> g: array<f32>;
@group(0) @binding(3) var<storage, read_write> w: array<f32>;
@group(0) @binding(4) var<storage, read_write> m: array<f32>;
@group(0) @binding(5) var<storage, read_write> v: array<f32>;

const LR: u32 = 0u;
const MOMENTUM: u32 = 1u;
const BETA1: u32 = 2u;
const BETA2: u32 = 3u;
const EPSILON: u32 = 4u;
const WEIGHT_DECAY: u32 = 5u;
const BETA1_POWER: u32 = 6u;
const BETA2_POWER: u32 = 7u;
const HALTED: u32 = 9u;

fn element(wg: vec3<u32>, nwg: vec3<u32>, lid: u32) -> u32 {
    return (wg.x + wg.y * nwg.x) * 256u + lid;
}

// The settings as one update reads them. Each kernel loads them first, before any branch:
// on llvmpipe a storage load under a branch is a masked loop over the lanes, and Adam's
// seven settings read inside its bounds check made it run at half speed.
struct Settings {
    lr: f32,
    momentum: f32,
    beta1: f32,
    beta2: f32,
    epsilon: f32,
    weight_decay: f32,
    beta1_power: f32,
    beta2_power: f32,
    halted: bool,
}

fn load_settings() -> Settings {
    return Settings(settings[LR], settings[MOMENTUM], settings[BETA1], settings[BETA2],
                    settings[EPSILON], settings[WEIGHT_DECAY], settings[BETA1_POWER],
                    settings[BETA2_POWER], settings[HALTED] != 0.0);
}

@compute @workgroup_size(1)
fn optimizer_advance() {
    if w[HALTED] != 0.0 {
        return;
    }
    w[BETA1_POWER] *= w[BETA1];
    w[BETA2_POWER] *= w[BETA2];
}

@compute @workgroup_size(256)
fn sgd_update(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
              @builtin(local_invocation_index) lid: u32) {
    let s = load_settings();
    let i = element(wg, nwg, lid);
    if i < p.len && !s.halted {
        w[i] -= s.lr * g[i];
    }
}

@compute @workgroup_size(256)
fn momentum_update(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                   @builtin(local_invocation_index) lid: u32) {
    let s = load_settings();
    let i = element(wg, nwg, lid);
    if i < p.len && !s.halted {
        let velocity = flush(s.momentum * m[i] + g[i]);
        m[i] = velocity;
        w[i] -= s.lr * velocity;
    }
}

// Zero for subnormal values, as src/cpu/optimizer.rs: a moment whose gradient stays 0 decays
// by β each step into subnormal floats, which llvmpipe (like the x86 CPU it runs on) computes
// with 50–100 times slower; flushed, it stays an exact 0.
fn flush(x: f32) -> f32 {
    return select(x, 0.0, abs(x) < 1.17549435e-38);
}

// Adam's step on element i, after any weight decay.
fn adam(s: Settings, i: u32) {
    let g_i = g[i];
    let m_i = flush(s.beta1 * m[i] + (1.0 - s.beta1) * g_i);
    let v_i = flush(s.beta2 * v[i] + (1.0 - s.beta2) * g_i * g_i);
    m[i] = m_i;
    v[i] = v_i;
    let m_hat = m_i / (1.0 - s.beta1_power);
    let v_hat = v_i / (1.0 - s.beta2_power);
    w[i] -= s.lr * m_hat / (sqrt(v_hat) + s.epsilon);
}

@compute @workgroup_size(256)
fn adam_update(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
               @builtin(local_invocation_index) lid: u32) {
    let s = load_settings();
    let i = element(wg, nwg, lid);
    if i < p.len && !s.halted {
        adam(s, i);
    }
}

@compute @workgroup_size(256)
fn adamw_update(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                @builtin(local_invocation_index) lid: u32) {
    let s = load_settings();
    let i = element(wg, nwg, lid);
    if i < p.len && !s.halted {
        w[i] -= s.lr * s.weight_decay * w[i];
        adam(s, i);
    }
}
