// Optimizer updates, in place on the parameters w, from their gradient g.
//   sgd_update:      w −= lr · g
//   momentum_update: v = μ · v + g;  w −= lr · v                          (PyTorch's form)
//   adam_update:     m = β1 m + (1 − β1) g;  v = β2 v + (1 − β2) g²;
//                    w −= lr · m̂ / (√v̂ + ε),  m̂ = m / (1 − β1^t), v̂ = v / (1 − β2^t)
//   adamw_update:    adam_update, and w −= lr · λ · w first (decoupled weight decay)
//   *_check:         the step's advance, and its update computed and not written: if any
//                    new weight or state would be NaN or infinite (a finite but huge lr · g
//                    overflows), the step is marked as the loss watch marks a bad loss, and
//                    the update that follows leaves everything as it is.
//   optimizer_advance: the advance alone, for steps recorded by hand without a check.
// An advance is one step of the β powers (β1^t *= β1, β2^t *= β2): the powers are kept, not
// computed with pow(), since 1 − pow(β2, t) cancels most digits and a GPU's pow is only a few
// ULP. No launch reads the slots it writes (the invocations of one launch run in no order):
// an advance or check reads the last step's powers and writes the step's own (step_beta*);
// an update reads those and keeps them as the last step's. Record all the checks of a step (or its
// advance) before all its updates.
// The settings live in a GPU row, not in the uniform, so the learning rate can change between
// steps with one small write and many steps can share one submit. The row is `Row`, which the
// host prepends from its one definition in src/settings.rs: lr, momentum, beta1, beta2, eps,
// weight_decay, the last step's beta1_power and beta2_power, loss.wgsl's watch (steps,
// first_bad, total, bad_loss), then the step's own step_beta1_power and step_beta2_power.
// settings.first_bad != 0 means a step's loss was not finite (loss.wgsl's watch_loss marks it)
// or its update was not (a check marks it): every update, check and advance then leaves
// everything as it is, so the weights stay the last finite ones until the host has reported
// the divergence and cleared the mark.
//
// Bindings (group 0), in three layouts that share the first four:
//   0 p:        Params, uniform
//   1 settings: Row (14 f32, 56 bytes), read-write
//   2 g:        (len), read-only
//   3 w:        (len), read-write (a check only reads it)
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
@group(0) @binding(1) var<storage, read_write> settings: Row;
@group(0) @binding(2) var<storage, read> g: array<f32>;
@group(0) @binding(3) var<storage, read_write> w: array<f32>;
@group(0) @binding(4) var<storage, read_write> m: array<f32>;
@group(0) @binding(5) var<storage, read_write> v: array<f32>;

fn element(wg: vec3<u32>, nwg: vec3<u32>, lid: u32) -> u32 {
    return (wg.x + wg.y * nwg.x) * 256u + lid;
}

// Each kernel loads the settings first, before any branch: on llvmpipe a storage load under a
// branch is a masked loop over the lanes, and Adam's seven settings read inside its bounds
// check made it run at half speed. (`Settings` and the step arithmetic: optimizer_math.wgsl.)

// As an update reads them: the powers its step's check or advance wrote.
fn update_settings() -> Settings {
    return Settings(settings.lr, settings.momentum, settings.beta1, settings.beta2,
                    settings.eps, settings.weight_decay, settings.step_beta1_power,
                    settings.step_beta2_power, settings.first_bad != 0.0);
}

// As a check or advance reads them: the last step's powers, advanced.
fn advanced_settings() -> Settings {
    return Settings(settings.lr, settings.momentum, settings.beta1, settings.beta2,
                    settings.eps, settings.weight_decay,
                    settings.beta1_power * settings.beta1,
                    settings.beta2_power * settings.beta2, settings.first_bad != 0.0);
}

// The check's part that every kind shares: invocation 0 writes the step's powers, and a step
// whose update is not finite is marked with the watch's count (1 for a step without a watch).
fn check(s: Settings, i: u32, step: Step) {
    if s.halted {
        return;
    }
    if i == 0u {
        settings.step_beta1_power = s.beta1_power;
        settings.step_beta2_power = s.beta2_power;
    }
    if i < p.len && !step_is_finite(step) {
        // Every invocation that finds one writes the same value.
        settings.first_bad = max(settings.steps, 1.0);
    }
}

// An update's part that every kind shares: invocation 0 keeps the step's powers as the last.
fn keep_powers(s: Settings, i: u32) {
    if i == 0u && !s.halted {
        settings.beta1_power = s.beta1_power;
        settings.beta2_power = s.beta2_power;
    }
}

@compute @workgroup_size(1)
fn optimizer_advance() {
    let s = advanced_settings();
    if !s.halted {
        settings.step_beta1_power = s.beta1_power;
        settings.step_beta2_power = s.beta2_power;
    }
}

// The checks read element i clamped into range, so every invocation computes a step (the
// bounds test is in check()) and invocation 0 exists for any len.
fn clamped(i: u32) -> u32 {
    return min(i, p.len - 1u);
}

@compute @workgroup_size(256)
fn sgd_check(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
             @builtin(local_invocation_index) lid: u32) {
    let s = advanced_settings();
    let i = element(wg, nwg, lid);
    let j = clamped(i);
    check(s, i, sgd_step(s, w[j], g[j]));
}

@compute @workgroup_size(256)
fn momentum_check(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                  @builtin(local_invocation_index) lid: u32) {
    let s = advanced_settings();
    let i = element(wg, nwg, lid);
    let j = clamped(i);
    check(s, i, momentum_step(s, w[j], g[j], m[j]));
}

@compute @workgroup_size(256)
fn adam_check(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
              @builtin(local_invocation_index) lid: u32) {
    let s = advanced_settings();
    let i = element(wg, nwg, lid);
    let j = clamped(i);
    check(s, i, adam_step(s, w[j], g[j], m[j], v[j]));
}

@compute @workgroup_size(256)
fn adamw_check(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
               @builtin(local_invocation_index) lid: u32) {
    let s = advanced_settings();
    let i = element(wg, nwg, lid);
    let j = clamped(i);
    check(s, i, adamw_step(s, w[j], g[j], m[j], v[j]));
}

@compute @workgroup_size(256)
fn sgd_update(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
              @builtin(local_invocation_index) lid: u32) {
    let s = update_settings();
    let i = element(wg, nwg, lid);
    if i < p.len && !s.halted {
        w[i] = sgd_step(s, w[i], g[i]).w;
    }
    keep_powers(s, i);
}

@compute @workgroup_size(256)
fn momentum_update(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                   @builtin(local_invocation_index) lid: u32) {
    let s = update_settings();
    let i = element(wg, nwg, lid);
    if i < p.len && !s.halted {
        let step = momentum_step(s, w[i], g[i], m[i]);
        m[i] = step.m;
        w[i] = step.w;
    }
    keep_powers(s, i);
}

@compute @workgroup_size(256)
fn adam_update(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
               @builtin(local_invocation_index) lid: u32) {
    let s = update_settings();
    let i = element(wg, nwg, lid);
    if i < p.len && !s.halted {
        let step = adam_step(s, w[i], g[i], m[i], v[i]);
        m[i] = step.m;
        v[i] = step.v;
        w[i] = step.w;
    }
    keep_powers(s, i);
}

@compute @workgroup_size(256)
fn adamw_update(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                @builtin(local_invocation_index) lid: u32) {
    let s = update_settings();
    let i = element(wg, nwg, lid);
    if i < p.len && !s.halted {
        let step = adamw_step(s, w[i], g[i], m[i], v[i]);
        m[i] = step.m;
        v[i] = step.v;
        w[i] = step.w;
    }
    keep_powers(s, i);
}
