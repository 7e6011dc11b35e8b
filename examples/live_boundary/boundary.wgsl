// Draws what the classifier has learnt: every pixel coloured by the class the network gives
// its grid cell (paler where it is less sure), then each training point as a small disc (an
// instanced quad, so the cost is per point, not per pixel and point).
//   probs:  (grid · grid, 3) softmax outputs, row-major cells (y down); the network's own
//           output buffer, bound read-only, never copied
//   points: (x, y, class, 0) per training point, in the data's [−1, 1]² (y up), drawn by
//           vs_point/fs_point with 6 vertices per instance

struct View {
    width: u32,
    height: u32,
    grid: u32,
    _pad: u32,
}

@group(0) @binding(0) var<uniform> view: View;
@group(0) @binding(1) var<storage, read> probs: array<f32>;
@group(0) @binding(2) var<storage, read> points: array<vec4<f32>>;

struct Cover {
    @builtin(position) position: vec4<f32>,
    // Where in the drawing, [0, 1]² with y down: the viewport is the drawing, wherever it
    // sits in the target (the whole window, or a rectangle of an egui panel).
    @location(0) uv: vec2<f32>,
}

// One triangle that covers the viewport.
@vertex
fn vs(@builtin(vertex_index) i: u32) -> Cover {
    let corner = vec2<f32>(f32((i << 1u) & 2u), f32(i & 2u));
    var cover: Cover;
    cover.position = vec4<f32>(corner * 2.0 - 1.0, 0.0, 1.0);
    cover.uv = vec2<f32>(corner.x, 1.0 - corner.y);
    return cover;
}

fn palette(k: u32) -> vec3<f32> {
    var colors = array<vec3<f32>, 3>(
        vec3<f32>(0.90, 0.30, 0.25),
        vec3<f32>(0.25, 0.70, 0.30),
        vec3<f32>(0.25, 0.45, 0.90),
    );
    return colors[min(k, 2u)];
}

@fragment
fn fs(cover: Cover) -> @location(0) vec4<f32> {
    let cell = min(vec2<u32>(max(cover.uv, vec2<f32>(0.0)) * f32(view.grid)), vec2<u32>(view.grid - 1u));
    let first = (cell.y * view.grid + cell.x) * 3u;
    let p = vec3<f32>(probs[first], probs[first + 1u], probs[first + 2u]);
    var best = 0u;
    if p.y > p.x { best = 1u; }
    if p.z > max(p.x, p.y) { best = 2u; }
    let confidence = max(p.x, max(p.y, p.z));
    let color = mix(vec3<f32>(1.0), palette(best), 0.3 + 0.5 * confidence);

    return vec4<f32>(color, 1.0);
}

// Markers: a radius of 4 pixels, a dark ring outside 3.
const RADIUS: f32 = 4.0;

struct Marker {
    @builtin(position) position: vec4<f32>,
    @location(0) offset: vec2<f32>,
    @location(1) @interpolate(flat) label: u32,
}

@vertex
fn vs_point(@builtin(vertex_index) v: u32, @builtin(instance_index) i: u32) -> Marker {
    var corners = array<vec2<f32>, 6>(
        vec2<f32>(-1.0, -1.0), vec2<f32>(1.0, -1.0), vec2<f32>(1.0, 1.0),
        vec2<f32>(-1.0, -1.0), vec2<f32>(1.0, 1.0), vec2<f32>(-1.0, 1.0),
    );
    let point = points[i];
    let offset = corners[v] * RADIUS; // in pixels
    let size = vec2<f32>(f32(view.width), f32(view.height));
    // The data's [−1, 1]² is the whole view, y up, as clip space is.
    var marker: Marker;
    marker.position = vec4<f32>(point.xy + offset * 2.0 / size, 0.0, 1.0);
    marker.offset = offset;
    marker.label = u32(point.z);
    return marker;
}

@fragment
fn fs_point(marker: Marker) -> @location(0) vec4<f32> {
    let d = length(marker.offset);
    if d >= RADIUS {
        discard;
    }
    return vec4<f32>(select(vec3<f32>(0.1), 0.6 * palette(marker.label), d < RADIUS - 1.0), 1.0);
}
