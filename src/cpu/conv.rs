use num_traits::Float;

use crate::Result;
use crate::shape::{Conv2dShape, check_len};

// 2-D convolution, PyTorch's Conv2d, over a batch of NCHW images (see `Conv2dShape`).
// Shapes, with g the geometry, (oh, ow) = g.out_size() and n the batch:
//   x, dx:  (n, in_channels · height · width)      one image per row
//   w, dw:  (out_channels, in_channels · kh · kw)  one filter per row, PyTorch's (o, c, i, j)
//   y, dy:  (n, out_channels · oh · ow)
//   b, db:  (out_channels)
// An output value sees the input at (oy·sh + i − ph, ox·sw + j − pw) for each kernel offset
// (i, j): the zero padding is every position outside the image.

/// `y[n, o, oy, ox] = b[o] + Σ_{c, i, j} w[o, c, i, j] · x[n, c, oy·sh + i − ph, ox·sw + j − pw]`
pub fn conv2d_forward<T: Float>(
    y: &mut [T],
    x: &[T],
    w: &[T],
    b: Option<&[T]>,
    n: usize,
    g: &Conv2dShape,
) -> Result<()> {
    check(g, "conv2d_forward", n, x, w, y)?;
    if let Some(b) = b {
        check_len("conv2d_forward", "bias", b.len(), g.out_channels, 1)?;
    }
    let (oh, ow) = g.out_size();
    for (k, y) in y.iter_mut().enumerate() {
        *y = b.map_or(T::zero(), |b| b[k / (oh * ow) % g.out_channels]);
    }
    for (out, weight, pixel) in connections(g, n) {
        y[out] = y[out] + w[weight] * x[pixel];
    }
    Ok(())
}

/// `dx[n, c, iy, ix] = Σ dy[n, o, oy, ox] · w[o, c, i, j]` over the outputs that saw that
/// pixel through offset (i, j): each output's gradient spread back over its window.
pub fn conv2d_input_grad<T: Float>(dx: &mut [T], dy: &[T], w: &[T], n: usize, g: &Conv2dShape) -> Result<()> {
    check(g, "conv2d_input_grad", n, dx, w, dy)?;
    dx.fill(T::zero());
    for (out, weight, pixel) in connections(g, n) {
        dx[pixel] = dx[pixel] + dy[out] * w[weight];
    }
    Ok(())
}

/// `dw[o, c, i, j] = Σ_{n, oy, ox} dy[n, o, oy, ox] · x[n, c, oy·sh + i − ph, ox·sw + j − pw]`
pub fn conv2d_weight_grad<T: Float>(
    dw: &mut [T],
    dy: &[T],
    x: &[T],
    n: usize,
    g: &Conv2dShape,
) -> Result<()> {
    check(g, "conv2d_weight_grad", n, x, dw, dy)?;
    dw.fill(T::zero());
    for (out, weight, pixel) in connections(g, n) {
        dw[weight] = dw[weight] + dy[out] * x[pixel];
    }
    Ok(())
}

/// `db[o] = Σ_{n, oy, ox} dy[n, o, oy, ox]`
pub fn conv2d_bias_grad<T: Float>(db: &mut [T], dy: &[T], n: usize, g: &Conv2dShape) -> Result<()> {
    g.check("conv2d_bias_grad")?;
    check_len("conv2d_bias_grad", "output gradient", dy.len(), n, g.output_len())?;
    check_len("conv2d_bias_grad", "bias gradient", db.len(), g.out_channels, 1)?;
    let (oh, ow) = g.out_size();
    for (o, db) in db.iter_mut().enumerate() {
        let mut sum = T::zero();
        for s in 0..n {
            for p in 0..oh * ow {
                sum = sum + dy[output(g, s, o, p / ow, p % ow)];
            }
        }
        *db = sum;
    }
    Ok(())
}

/// Every connection of the convolution: each output value (sample, channel, oy, ox) in order,
/// with each kernel offset (c, i, j) that lands inside the image, as the indices of the output
/// in y, the weight in w and the pixel in x. The three passes above are sums over these.
fn connections(g: &Conv2dShape, n: usize) -> impl Iterator<Item = (usize, usize, usize)> + '_ {
    let (oh, ow) = g.out_size();
    let outputs = (0..n).flat_map(move |s| {
        (0..g.out_channels).flat_map(move |o| (0..oh * ow).map(move |p| (s, o, p / ow, p % ow)))
    });
    outputs.flat_map(move |(s, o, oy, ox)| {
        let out = output(g, s, o, oy, ox);
        taps(g, oy, ox).map(move |(c, i, j, iy, ix)| (out, weight(g, o, c, i, j), pixel(g, s, c, iy, ix)))
    })
}

/// The kernel offsets `(c, i, j)` of output position (oy, ox) that land inside the image, with
/// the pixel `(iy, ix)` each reads.
fn taps(
    g: &Conv2dShape,
    oy: usize,
    ox: usize,
) -> impl Iterator<Item = (usize, usize, usize, usize, usize)> + '_ {
    let (kh, kw) = g.kernel;
    (0..g.in_channels).flat_map(move |c| {
        (0..kh).flat_map(move |i| {
            (0..kw).filter_map(move |j| {
                let iy = (oy * g.stride.0 + i).checked_sub(g.padding.0).filter(|&iy| iy < g.image.0)?;
                let ix = (ox * g.stride.1 + j).checked_sub(g.padding.1).filter(|&ix| ix < g.image.1)?;
                Some((c, i, j, iy, ix))
            })
        })
    })
}

fn pixel(g: &Conv2dShape, s: usize, c: usize, iy: usize, ix: usize) -> usize {
    ((s * g.in_channels + c) * g.image.0 + iy) * g.image.1 + ix
}

fn weight(g: &Conv2dShape, o: usize, c: usize, i: usize, j: usize) -> usize {
    ((o * g.in_channels + c) * g.kernel.0 + i) * g.kernel.1 + j
}

fn output(g: &Conv2dShape, s: usize, o: usize, oy: usize, ox: usize) -> usize {
    let (oh, ow) = g.out_size();
    ((s * g.out_channels + o) * oh + oy) * ow + ox
}

/// The geometry, then the input-side, weight-side and output-side buffers' lengths.
pub(crate) fn check<T>(g: &Conv2dShape, op: &'static str, n: usize, x: &[T], w: &[T], y: &[T]) -> Result<()> {
    g.check(op)?;
    check_len(op, "images", x.len(), n, g.input_len())?;
    check_len(op, "weights", w.len(), g.out_channels, g.filter_len())?;
    check_len(op, "outputs", y.len(), n, g.output_len())
}
