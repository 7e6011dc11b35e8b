// The playground's picture: the network's decision over [−1, 1]² (each pixel coloured by the
// class the network gives its grid cell, paler where it is less sure), the data points on
// top (training points filled, test points as rings), and beside it each hidden neuron's
// output over the same grid, as TensorFlow Playground shows them.
//   probs:  (grid², 2) softmax outputs, row-major cells (y down): the network's own output
//           buffer (or, on the CPU backend, one the page writes)
//   points: (x, y, class, test) per point, in the data's [−1, 1]² (y up)
//   act0..act3: (grid², width) outputs of hidden layers 0..3, bound as the forward pass
//           holds them; neurons[i] = (layer, column, width) of the i-th picture

struct View {
    // The viewport's size in pixels (for the markers' radius) and the grid's cells per side.
    width: u32,
    height: u32,
    grid: u32,
    _pad: u32,
    neurons: array<vec4<u32>, 32>,
}

@group(0) @binding(0) var<uniform> view: View;
@group(0) @binding(1) var<storage, read> probs: array<f32>;
@group(0) @binding(2) var<storage, read> points: array<vec4<f32>>;
@group(0) @binding(3) var<storage, read> act0: array<f32>;
@group(0) @binding(4) var<storage, read> act1: array<f32>;
@group(0) @binding(5) var<storage, read> act2: array<f32>;
@group(0) @binding(6) var<storage, read> act3: array<f32>;

// Class 0 orange (red dominant), class 1 blue (blue dominant): the page's test reads a
// pixel's class from its dominant channel.
const ORANGE: vec3<f32> = vec3<f32>(0.96, 0.55, 0.20);
const BLUE: vec3<f32> = vec3<f32>(0.20, 0.45, 0.90);

struct Cover {
    @builtin(position) position: vec4<f32>,
    // Where in the viewport, [0, 1]² with y down.
    @location(0) uv: vec2<f32>,
    @location(1) @interpolate(flat) neuron: u32,
}

// One triangle that covers the viewport; the instance is the neuron a picture shows.
@vertex
fn vs(@builtin(vertex_index) i: u32, @builtin(instance_index) neuron: u32) -> Cover {
    let corner = vec2<f32>(f32((i << 1u) & 2u), f32(i & 2u));
    var cover: Cover;
    cover.position = vec4<f32>(corner * 2.0 - 1.0, 0.0, 1.0);
    cover.uv = vec2<f32>(corner.x, 1.0 - corner.y);
    cover.neuron = neuron;
    return cover;
}

fn cell(uv: vec2<f32>) -> u32 {
    let c = min(vec2<u32>(max(uv, vec2<f32>(0.0)) * f32(view.grid)), vec2<u32>(view.grid - 1u));
    return c.y * view.grid + c.x;
}

@fragment
fn fs_boundary(cover: Cover) -> @location(0) vec4<f32> {
    let first = cell(cover.uv) * 2u;
    let p0 = probs[first];
    let p1 = probs[first + 1u];
    let color = select(ORANGE, BLUE, p1 > p0);
    return vec4<f32>(mix(vec3<f32>(1.0), color, 0.3 + 0.5 * max(p0, p1)), 1.0);
}

@fragment
fn fs_neuron(cover: Cover) -> @location(0) vec4<f32> {
    let n = view.neurons[cover.neuron];
    let i = cell(cover.uv) * n.z + n.y;
    var value = 0.0;
    switch n.x {
        case 0u: { value = act0[i]; }
        case 1u: { value = act1[i]; }
        case 2u: { value = act2[i]; }
        default: { value = act3[i]; }
    }
    // Blue for positive outputs, orange for negative, stronger up to ±1.
    let color = select(ORANGE, BLUE, value > 0.0);
    return vec4<f32>(mix(vec3<f32>(1.0), color, min(abs(value), 1.0)), 1.0);
}

// Markers: a radius of 4 pixels; training points filled with a dark ring, test points a ring.
const RADIUS: f32 = 4.0;

struct Marker {
    @builtin(position) position: vec4<f32>,
    @location(0) offset: vec2<f32>,
    @location(1) @interpolate(flat) point: vec2<u32>,
}

@vertex
fn vs_point(@builtin(vertex_index) v: u32, @builtin(instance_index) i: u32) -> Marker {
    var corners = array<vec2<f32>, 6>(
        vec2<f32>(-1.0, -1.0), vec2<f32>(1.0, -1.0), vec2<f32>(1.0, 1.0),
        vec2<f32>(-1.0, -1.0), vec2<f32>(1.0, 1.0), vec2<f32>(-1.0, 1.0),
    );
    let point = points[i];
    let offset = corners[v] * RADIUS;
    let size = vec2<f32>(f32(view.width), f32(view.height));
    var marker: Marker;
    marker.position = vec4<f32>(point.xy + offset * 2.0 / size, 0.0, 1.0);
    marker.offset = offset;
    marker.point = vec2<u32>(u32(point.z), u32(point.w));
    return marker;
}

@fragment
fn fs_point(marker: Marker) -> @location(0) vec4<f32> {
    let r = length(marker.offset);
    if r > RADIUS || (marker.point.y == 1u && r < RADIUS - 1.5) {
        discard;
    }
    let color = select(ORANGE, BLUE, marker.point.x == 1u);
    return vec4<f32>(select(color, color * 0.45, r > RADIUS - 1.0), 1.0);
}
