//! CPU convolution kernels on plain `f32` slices in NCHW layout, behind
//! [`layers::Conv2d`](crate::layers::Conv2d).
//!
//! A dense 3x3 to 7x7 convolution runs directly ([`conv2d_direct`]): its input planes padded
//! once, its weights packed at load, groups of 8 output channels computed from registers. Other
//! dense or grouped convolutions are an im2col into a per-thread scratch matrix (skipped for a
//! pointwise convolution, whose input already is that matrix) and one `gemm` call per image and
//! group, which overwrites the output; a depthwise convolution copies each plane once into a
//! reused zero-padded buffer split by stride phase, then computes the whole plane as contiguous
//! runs of 64 outputs held in registers across the window's taps (fused multiply-adds, the taps
//! unrolled for kernels up to 7x7). A 3x3 depthwise convolution and the 1x1 convolution after
//! it can also run as one layer on bordered planes ([`separable`]): each plane stored with its
//! zero border, so that no plane is padded or copied, a few rows of all channels computed at a
//! time, their product on AVX-512 by [`product()`] (no packing, blocks of eight output channels
//! in registers), elsewhere by `gemm`; so can a dense 3x3 convolution with stride 1, directly
//! or, with 16 input channels or more, by Winograd's F(2x2, 3x3) ([`winograd`]). The bias,
//! the residual and the activation run on each output row while it is still in cache. Every
//! kernel splits its work over the current pool's team, or over rayon's pool outside one (see
//! [`threads`](crate::threads)).

use std::mem::MaybeUninit;

mod product;
mod winograd;

use product::product;
pub(crate) use winograd::{conv2d_winograd_bordered, WinogradWeight};
#[cfg(test)]
pub(crate) use winograd::{takes as winograd_takes, Lanes};

use crate::image::sample_positions;
use crate::threads::{
    for_each_chunk, gemm_parallelism, grain, run_tasks, split_batch, tasks_for, team_share,
};

/// The activation applied to each output row, with its per-channel parameters resolved.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Epilogue {
    Identity,
    Relu,
    Relu6,
    LeakyRelu(f32),
    /// One slope per output channel.
    PRelu(Vec<f32>),
    Sigmoid,
}

impl Epilogue {
    /// Applies the activation in place to `row`, a run of channel `channel`'s outputs.
    #[inline(always)]
    fn apply(&self, channel: usize, row: &mut [f32]) {
        match self {
            Self::Identity => {}
            Self::Relu => row.iter_mut().for_each(|v| *v = v.max(0.)),
            Self::Relu6 => row.iter_mut().for_each(|v| *v = v.clamp(0., 6.)),
            Self::LeakyRelu(_) | Self::PRelu(_) => leaky(row, self.slope(channel)),
            Self::Sigmoid => row.iter_mut().for_each(|v| *v = 1. / (1. + (-*v).exp())),
        }
    }

    /// The negative slope of channel `channel` of a leaky ReLU or PReLU (1 for a channel the
    /// PReLU lacks and for the other activations).
    fn slope(&self, channel: usize) -> f32 {
        match self {
            Self::LeakyRelu(slope) => *slope,
            Self::PRelu(slopes) => slopes.get(channel).copied().unwrap_or(1.),
            _ => 1.,
        }
    }
}

fn leaky(row: &mut [f32], slope: f32) {
    row.iter_mut()
        .for_each(|v| *v = if *v < 0. { *v * slope } else { *v });
}

/// A tensor added to a convolution's output: `[N, channels, OH, OW]` values, `channels` at most
/// the output's (the output's further channels get nothing added), before or after the
/// activation.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Residual<'a> {
    pub values: &'a [f32],
    pub channels: usize,
    pub after_activation: bool,
}

impl<'a> Residual<'a> {
    /// The `len` values added to output plane `plane` (image-major, `out_channels` planes an
    /// image), if the residual has that channel, with whether they come after the activation.
    fn plane(&self, plane: usize, out_channels: usize, len: usize) -> Option<(&'a [f32], bool)> {
        let (image, channel) = (plane / out_channels.max(1), plane % out_channels.max(1));
        if channel >= self.channels {
            return None;
        }
        let start = (image * self.channels + channel) * len;
        Some((self.values.get(start..start + len)?, self.after_activation))
    }
}

/// Applies the activation to a finished output row, then adds the residual when it comes after.
#[inline(always)]
fn finish_row(
    epilogue: &Epilogue,
    channel: usize,
    row: &mut [f32],
    residual: Option<(&[f32], bool)>,
) {
    epilogue.apply(channel, row);
    if let Some((r, true)) = residual {
        row.iter_mut().zip(r).for_each(|(v, r)| *v += r);
    }
}

/// Completes output row `row` of channel `channel` holding the sum of products: adds the bias
/// (and the residual row when it comes before the activation), applies the activation, then
/// adds the residual row when it comes after. Every activation but the sigmoid runs in the
/// same pass as the additions.
#[inline(always)]
fn finish_sum(
    epilogue: &Epilogue,
    channel: usize,
    row: &mut [f32],
    bias: f32,
    residual: Option<(&[f32], bool)>,
) {
    match epilogue {
        Epilogue::Identity => add_then(row, bias, residual, |v| v),
        Epilogue::Relu => add_then(row, bias, residual, |v| v.max(0.)),
        Epilogue::Relu6 => add_then(row, bias, residual, |v| v.clamp(0., 6.)),
        Epilogue::LeakyRelu(_) | Epilogue::PRelu(_) => {
            let slope = epilogue.slope(channel);
            add_then(row, bias, residual, |v| if v < 0. { v * slope } else { v })
        }
        Epilogue::Sigmoid => {
            add_then(row, bias, residual.filter(|&(_, after)| !after), |v| v);
            finish_row(epilogue, channel, row, residual)
        }
    }
}

/// `row[i] = act(row[i] + bias)`, with the residual row added to the bias before the
/// activation (`act(row[i] + (bias + r[i]))`) or after it (`act(row[i] + bias) + r[i]`).
#[inline(always)]
fn add_then(
    row: &mut [f32],
    bias: f32,
    residual: Option<(&[f32], bool)>,
    act: impl Fn(f32) -> f32,
) {
    match residual {
        Some((r, false)) => row
            .iter_mut()
            .zip(r)
            .for_each(|(v, r)| *v = act(*v + (bias + r))),
        Some((r, true)) => row
            .iter_mut()
            .zip(r)
            .for_each(|(v, r)| *v = act(*v + bias) + r),
        None => row.iter_mut().for_each(|v| *v = act(*v + bias)),
    }
}

/// `input` (`[N, channels, plane]`), plus `addend` (the same shape) when given, with the
/// activation applied: the planes in parallel.
pub(crate) fn activate(
    input: &[f32],
    addend: Option<&[f32]>,
    channels: usize,
    plane: usize,
    epilogue: &Epilogue,
) -> Vec<f32> {
    let mut out = input.to_vec();
    for_each_chunk(&mut out, plane, grain(plane), |i, row| {
        let channel = i % channels.max(1);
        match addend {
            Some(b) => {
                let start = i * plane;
                let r = b.get(start..start + row.len());
                Vectorized::Finish(epilogue, channel, row, 0., r.map(|r| (r, false))).run()
            }
            None => Vectorized::Activation(epilogue, channel, row).run(),
        }
    });
    out
}

/// The shape of one convolution call: input planes, kernel, stride and zero padding.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Geometry {
    /// Images in the batch.
    pub batch: usize,
    /// Input channels.
    pub channels: usize,
    /// Input height and width.
    pub height: usize,
    pub width: usize,
    /// Square kernel size.
    pub kernel: usize,
    pub stride: usize,
    /// Zero rows above and columns left of the input (the bottom and right padding only shows
    /// in the output size).
    pub top: usize,
    pub left: usize,
    /// Output height and width.
    pub out_height: usize,
    pub out_width: usize,
}

impl Geometry {
    /// The geometry of a `kernel` x `kernel` convolution with `stride` and padding
    /// `(top, bottom, left, right)` on `[batch, channels, height, width]`; `None` when the kernel
    /// does not fit the padded input, the input has no pixels or the stride is zero.
    pub fn new(
        (batch, channels, height, width): (usize, usize, usize, usize),
        kernel: usize,
        stride: usize,
        (top, bottom, left, right): (usize, usize, usize, usize),
    ) -> Option<Self> {
        let padded_h = height + top + bottom;
        let padded_w = width + left + right;
        let empty = channels == 0 || height == 0 || width == 0;
        if empty || stride == 0 || kernel == 0 || padded_h < kernel || padded_w < kernel {
            return None;
        }
        Some(Self {
            batch,
            channels,
            height,
            width,
            kernel,
            stride,
            top,
            left,
            out_height: (padded_h - kernel) / stride + 1,
            out_width: (padded_w - kernel) / stride + 1,
        })
    }

    fn in_plane(&self) -> usize {
        self.height * self.width
    }

    fn out_plane(&self) -> usize {
        self.out_height * self.out_width
    }

    /// Whether the im2col matrix of one image is the image itself.
    fn is_pointwise(&self) -> bool {
        self.kernel == 1 && self.stride == 1 && self.top == 0 && self.left == 0
    }

    /// The output positions `o` in `0..len` whose input position `o * stride + offset - pad`
    /// lies in `0..size`, as a range.
    fn valid(&self, len: usize, offset: usize, pad: usize, size: usize) -> std::ops::Range<usize> {
        let s = self.stride;
        // First o with o * s + offset >= pad.
        let first = pad.saturating_sub(offset).div_ceil(s);
        // One past the last o with o * s + offset < size + pad.
        let end = (size + pad)
            .checked_sub(offset)
            .map_or(0, |room| room.div_ceil(s));
        first.min(len)..end.min(len)
    }
}

/// Writes the im2col matrix of one image `src` (`[C, H, W]`) into `col`
/// (`[C * k * k, OH * OW]`, row `(c * k + ky) * k + kx`), zeros where the kernel reads padding.
fn im2col(g: &Geometry, src: &[f32], col: &mut [f32]) {
    let (k, p) = (g.kernel, g.out_plane());
    let ip = g.in_plane();
    for_each_chunk(col, k * k * p, grain(k * k * p), |c, rows| {
        Vectorized::Im2col(g, &src[c * ip..(c + 1) * ip], rows).run()
    });
}

/// The `k * k` im2col rows of one input plane.
#[inline(always)]
fn im2col_plane(g: &Geometry, plane: &[f32], rows: &mut [f32]) {
    let (k, ow, p) = (g.kernel, g.out_width, g.out_plane());
    for (kk, row) in rows.chunks_mut(p).enumerate() {
        let (ky, kx) = (kk / k, kk % k);
        let ox = g.valid(ow, kx, g.left, g.width);
        if g.stride == 1 && ow == g.width {
            shifted_plane(g, (ky, kx), &ox, plane, row);
            continue;
        }
        for (oy, out) in row.chunks_mut(ow).enumerate() {
            let iy = oy * g.stride + ky;
            if iy < g.top || iy >= g.top + g.height || ox.is_empty() {
                out.fill(0.);
                continue;
            }
            let line = &plane[(iy - g.top) * g.width..(iy - g.top + 1) * g.width];
            out[..ox.start].fill(0.);
            out[ox.end..].fill(0.);
            let x0 = ox.start * g.stride + kx - g.left;
            strided_copy(&mut out[ox.clone()], &line[x0..], g.stride);
        }
    }
}

/// `dst[j] = src[j * stride]` for every `j` of `dst`; `src` must hold `(dst.len() - 1) *
/// stride + 1` values at least.
#[inline(always)]
fn strided_copy(dst: &mut [f32], src: &[f32], stride: usize) {
    match stride {
        1 => dst.copy_from_slice(&src[..dst.len()]),
        2 => {
            // Every other value, as pairs (which vectorise): 2 (n - 1) < src.len() for the n
            // values, so at most the last one has no full pair.
            let (pairs, last) = dst.split_at_mut(dst.len().min(src.len() / 2));
            pairs
                .iter_mut()
                .zip(src.chunks_exact(2))
                .for_each(|(d, pair)| *d = pair[0]);
            if let Some(d) = last.first_mut() {
                *d = src[2 * pairs.len()];
            }
        }
        s => dst
            .iter_mut()
            .zip(src.iter().step_by(s))
            .for_each(|(d, v)| *d = *v),
    }
}

/// One im2col row (`OH * OW` values) of a stride-1 convolution whose output is as wide as its
/// input: the plane shifted by the tap `(ky, kx)`, so that output `i` reads input `i + (ky -
/// top) * W + kx - left` wherever the tap lies inside the input. It is one contiguous copy of
/// the valid rows, then zeros in the rows and columns where the tap reads padding (instead of
/// a copy per output row).
fn shifted_plane(
    g: &Geometry,
    (ky, kx): (usize, usize),
    cols: &std::ops::Range<usize>,
    plane: &[f32],
    row: &mut [f32],
) {
    let ow = g.out_width;
    let rows = g.valid(g.out_height, ky, g.top, g.height);
    let (start, end) = (rows.start * ow, rows.end * ow);
    if cols.is_empty() || start >= end {
        row.fill(0.);
        return;
    }
    row[..start].fill(0.);
    row[end..].fill(0.);
    // Output i of the valid rows reads input i + shift; the first `left - kx` (or last
    // `kx - left`) outputs of the block would read before (after) the plane, but they lie in
    // the columns zeroed below.
    let (before, after) = (g.left.saturating_sub(kx), kx.saturating_sub(g.left));
    let (first, last) = (start + before, end - after);
    // A valid row iy = oy + ky - top and column ox + kx - left: the first copied output (row
    // rows.start, column `before`) reads (rows.start + ky - top) * W + (before + kx - left),
    // whose column part is >= 0; the last reads a column <= W - 1 of a row < H.
    let src = (rows.start + ky - g.top) * g.width + before + kx - g.left;
    row[first..last].copy_from_slice(&plane[src..src + (last - first)]);
    for line in row[start..end].chunks_exact_mut(ow) {
        line[..cols.start].fill(0.);
        line[cols.end..].fill(0.);
    }
}

/// Where a product goes.
enum Dst<'a> {
    /// Overwritten, never read: its values need not be initialised.
    Write(&'a mut [MaybeUninit<f32>]),
    /// The product is added to its values.
    Add(&'a mut [f32]),
}

impl Dst<'_> {
    fn len(&self) -> usize {
        match self {
            Self::Write(d) => d.len(),
            Self::Add(d) => d.len(),
        }
    }

    /// Calls `f(i, part)` on the `chunk`-long parts of the first `len` values, in parallel (see
    /// [`for_each_chunk`]), each part of the same kind as `self`.
    fn split(self, len: usize, chunk: usize, f: impl Fn(usize, Dst) + Sync) {
        match self {
            Self::Write(d) => for_each_chunk(&mut d[..len], chunk, 1, |i, d| f(i, Dst::Write(d))),
            Self::Add(d) => for_each_chunk(&mut d[..len], chunk, 1, |i, d| f(i, Dst::Add(d))),
        }
    }
}

/// `dst (m x n, row-major) = lhs (m x k, row-major) * rhs (k x n, row stride rhs_rs)`, plus
/// `dst`'s own values for [`Dst::Add`], on the current pool's threads when `threaded` (else
/// on the calling thread); every value of `dst`'s first `m * n` is written. Panics (never
/// reads or writes out of bounds) when a slice is too short for its matrix.
fn matmul(
    dst: Dst,
    lhs: &[f32],
    rhs: &[f32],
    (m, n, k): (usize, usize, usize),
    rhs_rs: usize,
    threaded: bool,
) {
    let fits =
        dst.len() >= m * n && lhs.len() >= m * k && (k == 0 || rhs.len() >= (k - 1) * rhs_rs + n);
    let share = |len: usize| team_share(m * n * k, len).filter(|_| threaded && fits);
    // A product much wider than tall (a convolution's few output channels over many
    // positions) splits by columns, each task reading its columns of `rhs`, the larger
    // operand, and all of `lhs`; otherwise by rows, each task reading all of `rhs`. Splitting
    // by rows, every task packed the whole image matrix (RetinaFace at two threads: 22–28 ms
    // by rows, 17–20 ms by columns); by columns, the small products of the blendshapes (96
    // rows of 256) were 10 % slower.
    let by_columns = share(n / 16).filter(|_| n >= 4 * m).map(|c| c * 16);
    if let Some(rows) = share(m).filter(|_| by_columns.is_none()) {
        // One product per thread of the team, each on its rows of `lhs` and `dst`.
        dst.split(m * n, rows * n, |i, d| {
            let part_rows = d.len() / n;
            matmul(
                d,
                &lhs[i * rows * k..],
                rhs,
                (part_rows, n, k),
                rhs_rs,
                false,
            )
        });
        return;
    }
    if let Some(cols) = by_columns.filter(|_| m == 1) {
        // A single row (a batch-1 dense layer, which reads more weights than it computes):
        // its columns are contiguous parts of `dst`.
        dst.split(n, cols, |i, d| {
            let width = d.len();
            matmul(d, lhs, &rhs[i * cols..], (1, width, k), rhs_rs, false)
        });
        return;
    }
    let dst = match dst {
        // A single row added to (a batch-1 dense layer after its bias): no packing.
        Dst::Add(d) if m == 1 && fits => {
            Vectorized::RowProduct(&mut d[..n], &lhs[..k], rhs, rhs_rs).run();
            return;
        }
        dst => dst,
    };
    let (dst, dst_len, accumulate) = match dst {
        Dst::Write(d) => (d.as_mut_ptr().cast::<f32>(), d.len(), false),
        Dst::Add(d) => (d.as_mut_ptr(), d.len(), true),
    };
    assert!(dst_len >= m * n, "gemm: destination too short");
    if let Some(cols) = by_columns {
        // Column blocks of several rows interleave in `dst`: each task writes its block
        // through the pointer, with the row stride `n`.
        let dst = SharedPtr(dst);
        crate::threads::run_tasks(n.div_ceil(cols), &|t| {
            let (first, width) = (t * cols, cols.min(n - t * cols));
            // SAFETY: task `t` writes (and, when accumulating, reads) `dst[i * n + j]` for i <
            // m and `first <= j < first + width <= n`, below m * n <= dst_len (asserted
            // above): inside the borrowed destination, and disjoint from every other task's
            // columns, so no two tasks touch the same value. `run_tasks` returns once every
            // task is done, so no access outlives the borrow.
            unsafe {
                gemm_raw(
                    dst.at(first),
                    (n, 1, accumulate),
                    lhs,
                    &rhs[first..],
                    (m, width, k),
                    rhs_rs,
                    gemm::Parallelism::None,
                )
            }
        });
        return;
    }
    let parallelism = if threaded {
        gemm_parallelism(m * n * k)
    } else {
        gemm::Parallelism::None
    };
    // SAFETY: `gemm_raw` writes (and, when accumulating, reads) `dst[i * n + j]` for i < m,
    // j < n, the highest being m * n - 1 < dst_len (asserted above); `dst` is borrowed
    // mutably, so nothing else accesses it, and the call returns only once every thread it
    // started is done.
    unsafe {
        gemm_raw(
            dst,
            (n, 1, accumulate),
            lhs,
            rhs,
            (m, n, k),
            rhs_rs,
            parallelism,
        )
    }
}

/// A 1x1 convolution of bordered planes (`shape`) by `weight` (`[O, C]`) with `bias` (`[O]`,
/// or empty) and the activation, its outputs channels last: `[N, H, W, O]`, each position's
/// `O` values side by side (a detection head's layout, with no transposed copy of the whole
/// output). Each part of an image's rows is one product over the rows' positions, border
/// columns included, into output planes in the per-thread scratch, completed there plane by
/// plane, then written out position by position. (A product straight into channels-last
/// order has the few channels as `gemm`'s long side, and its values were completed one by
/// one: BlazeFace's full-range head regressor took 109 µs against 74 at one thread.) Panics
/// when `input` does not hold `shape`'s planes or `weight` is not `outputs x C`.
pub(crate) fn pointwise_channels_last(
    shape: &BorderedShape,
    input: &[f32],
    weight: &[f32],
    (outputs, bias, epilogue): (usize, &[f32], &Epilogue),
) -> Vec<f32> {
    let (c, h, w) = (shape.channels, shape.height, shape.width);
    let (plane, cols) = (shape.plane(), shape.cols());
    assert!(
        h > 0
            && w > 0
            && outputs > 0
            && input.len() == shape.batch * c * plane
            && weight.len() == outputs * c,
        "pointwise_channels_last: an empty plane or a slice of the wrong size"
    );
    let (row, image_len) = (w * outputs, h * w * outputs);
    let share = team_share(outputs * c * h * cols, h).unwrap_or(h);
    let fill = |out: &mut [MaybeUninit<f32>]| {
        let images = input.chunks_exact(c * plane).zip(out.chunks_mut(image_len));
        for (src, image) in images {
            for_each_chunk(image, share * row, 1, |part, dst| {
                let (first, rows) = (part * share, dst.len() / row);
                let n = rows * cols;
                with_scratch(outputs * n, |sums| {
                    // SAFETY: the product writes `sums[o * n + p]` for `o < outputs`, `p < n`:
                    // all of `sums`, this thread's own scratch.
                    unsafe {
                        let rhs = &src[shape.at(first, 0)..];
                        one_product(sums.as_mut_ptr(), n, weight, rhs, (outputs, n, c), plane)
                    };
                    for (o, sums) in sums.chunks_exact_mut(n).enumerate() {
                        let b = bias.get(o).copied().unwrap_or(0.);
                        Vectorized::Finish(epilogue, o, sums, b, None).run();
                    }
                    for (y, dst) in dst.chunks_mut(row).enumerate() {
                        for (x, dst) in dst.chunks_mut(outputs).enumerate() {
                            let at = y * cols + x;
                            for (o, v) in dst.iter_mut().enumerate() {
                                *v = MaybeUninit::new(sums[o * n + at]);
                            }
                        }
                    }
                })
            });
        }
    };
    // SAFETY: the output splits into one chunk of `image_len = h * w * outputs` values per
    // image (the input holds `batch` images, asserted above), each chunk into parts of whole
    // rows of `w * outputs`; every part's rows get all of their positions' values.
    unsafe { written(shape.batch * image_len, fill) }
}

/// Independent chains of sums over `k` in [`row_product`]: enough to hide the latency of
/// fused multiply-adds on one vector of columns.
const ROW_CHAINS: usize = 8;

/// `dst += lhs * rhs`, `lhs` one row of `k` values, `rhs` `k x n` (row stride `rhs_rs`, `n =
/// dst.len()`): a batch-1 dense layer, which reads each weight once. Each vector of columns
/// sums its products in [`ROW_CHAINS`] chains, `k`'s values dealt out to them in turn, then
/// adds their sum to `dst`. Panics when `rhs` is too short.
#[inline(always)]
fn row_product<S: pulp::Simd>(simd: S, dst: &mut [f32], lhs: &[f32], rhs: &[f32], rhs_rs: usize) {
    let lanes = S::F32_LANES;
    for (j, out) in dst.chunks_mut(lanes).enumerate() {
        let (first, width) = (j * lanes, out.len());
        let mut acc = [simd.splat_f32s(0.); ROW_CHAINS];
        let load = |l: usize| {
            let row = &rhs[l * rhs_rs + first..l * rhs_rs + first + width];
            match width == lanes {
                true => load::<S>(row),
                false => simd.partial_load_f32s(row),
            }
        };
        let chunks = lhs.chunks_exact(ROW_CHAINS);
        let rest = chunks.remainder();
        for (c, xs) in chunks.enumerate() {
            for (u, (a, &x)) in acc.iter_mut().zip(xs).enumerate() {
                *a = simd.mul_add_e_f32s(simd.splat_f32s(x), load(c * ROW_CHAINS + u), *a);
            }
        }
        let done = lhs.len() - rest.len();
        for (u, (a, &x)) in acc.iter_mut().zip(rest).enumerate() {
            *a = simd.mul_add_e_f32s(simd.splat_f32s(x), load(done + u), *a);
        }
        let sum = acc
            .iter()
            .fold(simd.partial_load_f32s(out), |s, &a| simd.add_f32s(s, a));
        simd.partial_store_f32s(out, sum);
    }
}

/// The first vector of `values`. Panics when `values` holds fewer.
#[inline(always)]
fn load<S: pulp::Simd>(values: &[f32]) -> S::f32s {
    pulp::bytemuck::pod_read_unaligned(pulp::bytemuck::cast_slice(&values[..S::F32_LANES]))
}

/// A destination pointer shared by the tasks of a column-split product, each of which writes
/// its own columns.
#[derive(Clone, Copy)]
struct SharedPtr(*mut f32);

// SAFETY: the pointer is only dereferenced by `gemm_raw` in tasks that write disjoint values
// (see `matmul`), while the borrow it was taken from is held.
unsafe impl Send for SharedPtr {}
// SAFETY: as above.
unsafe impl Sync for SharedPtr {}

impl SharedPtr {
    /// The pointer `offset` values on (a method, so that closures capture the whole wrapper).
    fn at(self, offset: usize) -> *mut f32 {
        self.0.wrapping_add(offset)
    }
}

/// `gemm` into `dst` (`m x n`, row stride `dst_rs`, column stride `dst_cs`), plus its values
/// when `accumulate`, of `lhs (m x k, row-major) * rhs (k x n, row stride rhs_rs)`. Panics
/// when `lhs` or `rhs` is too short for its matrix.
///
/// # Safety
/// `dst` must be valid for writes (and, when accumulating, reads) of `dst[i * dst_rs + j *
/// dst_cs]` for every i < m, j < n, its values initialised when accumulating, and no other
/// thread may access those values during the call.
unsafe fn gemm_raw(
    dst: *mut f32,
    (dst_rs, dst_cs, accumulate): (usize, usize, bool),
    lhs: &[f32],
    rhs: &[f32],
    (m, n, k): (usize, usize, usize),
    rhs_rs: usize,
    parallelism: gemm::Parallelism,
) {
    assert!(lhs.len() >= m * k, "gemm: left matrix too short");
    assert!(
        k == 0 || n == 0 || rhs.len() >= (k - 1) * rhs_rs + n,
        "gemm: right matrix too short"
    );
    if m == 0 || n == 0 {
        return;
    }
    if k == 0 {
        // An empty sum: zeros, which `gemm` would not write.
        if !accumulate {
            for i in 0..m {
                for j in 0..n {
                    // SAFETY: `dst[i * dst_rs + j * dst_cs]`, i < m, j < n: valid for writes
                    // and unshared (the caller's guarantee).
                    unsafe { dst.add(i * dst_rs + j * dst_cs).write(0.) };
                }
            }
        }
        return;
    }
    // SAFETY: `gemm` reads `lhs[i * k + l]` for i < m, l < k (row stride k, column stride 1),
    // the highest index being m * k - 1 < lhs.len(); reads `rhs[l * rhs_rs + j]` for l < k,
    // j < n, the highest being (k - 1) * rhs_rs + n - 1 < rhs.len() (both asserted above);
    // and writes (and, when accumulating, reads) `dst[i * dst_rs + j * dst_cs]`, which the
    // caller guarantees valid and unshared. The call returns only once every thread it started
    // is done. Without `accumulate` (`read_dst` false) `gemm` only writes `dst`, so its values
    // may be uninitialised. The strides fit `isize` because each is at most a slice length.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            dst,
            dst_cs as isize,
            dst_rs as isize,
            accumulate,
            lhs.as_ptr(),
            1,
            k as isize,
            rhs.as_ptr(),
            1,
            rhs_rs as isize,
            1.0f32,
            1.0f32,
            false,
            false,
            false,
            parallelism,
        );
    }
}

/// `dst (m x n, row stride dst_rs) = lhs (m x k, row-major) * rhs (k x n, row stride rhs_rs)`
/// on the calling thread: by [`product()`] on AVX-512, by `gemm` elsewhere. Panics when `lhs`
/// or `rhs` is too short for its matrix.
///
/// # Safety
/// As [`gemm_raw`] without accumulating: `dst` must be valid for writes of `dst[i * dst_rs +
/// j]` for every i < m, j < n, and no other thread may access those values during the call.
unsafe fn one_product(
    dst: *mut f32,
    dst_rs: usize,
    lhs: &[f32],
    rhs: &[f32],
    dims: (usize, usize, usize),
    rhs_rs: usize,
) {
    // SAFETY: the caller's guarantee, which both functions require of `dst`.
    unsafe {
        if !product(dst, dst_rs, lhs, rhs, dims, rhs_rs) {
            let parallelism = gemm::Parallelism::None;
            gemm_raw(dst, (dst_rs, 1, false), lhs, rhs, dims, rhs_rs, parallelism)
        }
    }
}

/// A dense (`groups == 1`) or grouped convolution of `input` (`[N, C, H, W]`) by `weight`
/// (`[O, C / groups, k, k]`, flattened) with `bias` (`[O]`, or empty), the activation and the
/// residual: `[N, O, OH, OW]`. `groups` divides both `C` and `O`.
pub(crate) fn conv2d(
    g: &Geometry,
    input: &[f32],
    weight: &[f32],
    bias: &[f32],
    (out_channels, groups): (usize, usize),
    epilogue: &Epilogue,
    residual: Option<Residual>,
) -> Vec<f32> {
    let (p, depth) = (g.out_plane(), g.channels / groups * g.kernel * g.kernel);
    let (in_len, out_len) = (g.channels * g.in_plane(), out_channels * p);
    assert_eq!(
        input.len(),
        g.batch * in_len,
        "conv2d: input of the wrong size"
    );
    let per_group = out_channels / groups;
    assert_eq!(
        per_group * groups,
        out_channels,
        "conv2d: groups must divide the outputs"
    );
    let rows = |image: usize, c: usize| residual?.plane(image * out_channels + c, out_channels, p);
    let col_len = if g.is_pointwise() {
        0
    } else {
        g.channels * g.kernel * g.kernel * p
    };
    // One image: im2col, one `gemm` per group (threaded when `threaded`) writing the image's
    // `out_channels * p` outputs, then the bias, the residual and the activation in one pass
    // over each row.
    let one_image =
        |image, src: &[f32], dst: &mut [MaybeUninit<f32>], col: &mut [f32], threaded| {
            let rhs: &[f32] = if g.is_pointwise() {
                src
            } else {
                im2col(g, src, col);
                col
            };
            for (group, dst) in dst.chunks_exact_mut(per_group * p).enumerate() {
                matmul(
                    Dst::Write(dst),
                    &weight[group * per_group * depth..(group + 1) * per_group * depth],
                    &rhs[group * depth * p..(group + 1) * depth * p],
                    (per_group, p, depth),
                    p,
                    threaded,
                );
            }
            // SAFETY: `dst` holds `out_len = out_channels * p` values, which the `groups`
            // chunks of `per_group * p` tile exactly (`per_group * groups == out_channels`,
            // asserted above), and `matmul` wrote every value of each chunk.
            let dst = unsafe { dst.assume_init_mut() };
            for_each_chunk(dst, p, grain(p), |c, row| {
                let b = bias.get(c).copied().unwrap_or(0.);
                Vectorized::Finish(epilogue, c, row, b, rows(image, c)).run()
            });
        };
    let macs = g.batch * out_channels * p * depth;
    let fill = |out: &mut [MaybeUninit<f32>]| {
        let sizes = (g.batch, in_len, out_len);
        for_each_image((input, out), sizes, macs, (&SCRATCH, col_len), one_image)
    };
    // SAFETY: the input holds `g.batch` images of `in_len` values (checked by the layer), so
    // the `g.batch * out_len` outputs split into exactly `g.batch` chunks of `out_len`, one
    // per image, and `one_image` writes all of its chunk (see there).
    unsafe { written(g.batch * out_len, fill) }
}

/// Runs `one_image(image, src, dst, buffer, threaded)` on each of the `batch` images of
/// `input` (`in_len` values each) and its `out_len` values of `out`, `buffer` being `len` values
/// of the running thread's `scratch`. A batch of `macs` multiply-adds that splits by image
/// (see [`split_batch`]) runs one image per task, each on one thread (one parallel region for
/// the layer instead of one per image); otherwise the images run in turn, each `threaded`.
fn for_each_image(
    (input, out): (&[f32], &mut [MaybeUninit<f32>]),
    (batch, in_len, out_len): (usize, usize, usize),
    macs: usize,
    (scratch, len): (&'static ScratchKey, usize),
    one_image: impl Fn(usize, &[f32], &mut [MaybeUninit<f32>], &mut [f32], bool) + Sync,
) {
    if split_batch(batch, macs) {
        for_each_chunk(out, out_len, 1, |image, dst| {
            let src = &input[image * in_len..(image + 1) * in_len];
            with_buffer(scratch, len, |buffer| {
                one_image(image, src, dst, buffer, false)
            })
        });
    } else {
        with_buffer(scratch, len, |buffer| {
            let images = input
                .chunks_exact(in_len)
                .zip(out.chunks_exact_mut(out_len));
            for (image, (src, dst)) in images.enumerate() {
                one_image(image, src, dst, buffer, true);
            }
        });
    }
}

/// `len` values, each written by `write` (which gets them uninitialised) before they are
/// returned: the outputs of a kernel, which need no zeroing since the kernel overwrites them.
/// In this crate's tests they start as a marked NaN and a value left unwritten panics, so
/// the kernel tests check every caller's proof below.
///
/// # Safety
/// `write` must write every one of the `len` values it is given.
unsafe fn written(len: usize, write: impl FnOnce(&mut [MaybeUninit<f32>])) -> Vec<f32> {
    let mut out = Vec::with_capacity(len);
    let values = &mut out.spare_capacity_mut()[..len];
    #[cfg(test)]
    values.fill(MaybeUninit::new(f32::from_bits(UNWRITTEN)));
    write(values);
    // SAFETY: the capacity is at least `len`, and the caller's `write` initialised the first
    // `len` values.
    unsafe { out.set_len(len) };
    #[cfg(test)]
    assert!(
        out.iter().all(|v| v.to_bits() != UNWRITTEN),
        "a kernel left an output unwritten"
    );
    out
}

/// The NaN that marks an output no kernel wrote, in tests.
#[cfg(test)]
const UNWRITTEN: u32 = 0x7fc0_dead;

/// Output channels of a direct convolution computed together: each input value loaded is
/// multiplied by this many broadcast weights.
const DIRECT_CHANNELS: usize = 8;

/// The largest kernel the direct convolution takes (larger ones go through im2col and `gemm`).
pub(crate) const MAX_DIRECT_KERNEL: usize = 7;

/// A dense convolution's weight (`[O, C, k, k]`) packed once, at load, for [`conv2d_direct`]:
/// groups of [`DIRECT_CHANNELS`] output channels (the last one padded with zero weights), each
/// group's weights `[input][tap][DIRECT_CHANNELS]`, so that the group's weights for one input
/// channel and tap are side by side, in the order the kernel reads them.
#[derive(Debug, Clone)]
pub(crate) struct DirectWeight {
    values: Vec<f32>,
    outputs: usize,
    inputs: usize,
    kernel: usize,
}

impl DirectWeight {
    /// Packs `weight` (`[outputs, inputs, kernel, kernel]`, flattened); `None` when its length
    /// does not match, it has no inputs or the kernel is empty or larger than
    /// [`MAX_DIRECT_KERNEL`].
    pub fn new(weight: &[f32], (outputs, inputs, kernel): (usize, usize, usize)) -> Option<Self> {
        let taps = kernel * kernel;
        let fits = weight.len() == outputs * inputs * taps;
        if !fits || taps == 0 || inputs == 0 || kernel > MAX_DIRECT_KERNEL {
            return None;
        }
        let groups = outputs.div_ceil(DIRECT_CHANNELS);
        let mut values = vec![0.; groups * inputs * taps * DIRECT_CHANNELS];
        for (o, kernels) in weight.chunks_exact(inputs * taps).enumerate() {
            let (group, lane) = (o / DIRECT_CHANNELS, o % DIRECT_CHANNELS);
            for (j, &w) in kernels.iter().enumerate() {
                values[(group * inputs * taps + j) * DIRECT_CHANNELS + lane] = w;
            }
        }
        Some(Self {
            values,
            outputs,
            inputs,
            kernel,
        })
    }

    /// The weights of output group `group`: `[input][tap][DIRECT_CHANNELS]`.
    fn group(&self, group: usize) -> &[f32] {
        let len = self.inputs * self.kernel * self.kernel * DIRECT_CHANNELS;
        &self.values[group * len..(group + 1) * len]
    }
}

/// A dense convolution of `input` (`[N, C, H, W]`) by a packed `weight` with `bias` (`[O]`, or
/// empty), the activation and the residual, computed directly: `[N, O, OH, OW]`, in the
/// bordered layout of [`BorderedShape`] when `bordered` (for a network's first layer before
/// layers on bordered activations: no copy to convert its output). Each input
/// plane of an image is copied once into a zero-padded buffer laid out as the depthwise
/// kernel lays it out ([`PhaseLayout`]: every tap reads one contiguous run for the whole
/// plane), then each group of [`DIRECT_CHANNELS`] output channels is computed three vectors of
/// positions at a time (48 on AVX-512), its 8 x 3 vectors of sums held in registers across
/// every input channel and tap: each run of
/// input values is read once for the eight channels, and the weights were packed at load, so
/// there is neither an im2col matrix nor `gemm`'s packing of its operands on each call. The
/// groups are split over the team's threads (the images, for a batch that splits by image).
/// `None` when the geometry is not the weight's (a kernel or channel count that differs), or
/// when the padded layout would compute more than twice the outputs the plane has (a plane
/// of 2 x 2 or less: `gemm` takes those).
pub(crate) fn conv2d_direct(
    g: &Geometry,
    input: &[f32],
    weight: &DirectWeight,
    (bias, epilogue): (&[f32], &Epilogue),
    residual: Option<Residual>,
    bordered: bool,
) -> Option<Vec<f32>> {
    if g.kernel != weight.kernel || g.channels != weight.inputs {
        return None;
    }
    let rows = PlaneRows::new((g.out_height, g.out_width), bordered);
    // Bordered with no residual, the sums are computed at the output's pitch and stored in
    // place when the last block's stores stay inside the plane.
    let in_place = bordered && residual.is_none();
    let layout = PhaseLayout::new(g, if in_place { rows.pitch } else { 0 });
    let in_place = in_place && layout.cols == rows.pitch && rows.start + layout.outputs <= rows.len;
    let (p, outputs) = (g.out_plane(), weight.outputs);
    if layout.outputs > 2 * p {
        return None;
    }
    let op = rows.len;
    let (in_len, out_len) = (g.channels * g.in_plane(), outputs * op);
    assert_eq!(
        input.len(),
        g.batch * in_len,
        "conv2d_direct: input of the wrong size"
    );
    let groups = outputs.div_ceil(DIRECT_CHANNELS);
    let image_macs = out_len * g.channels * g.kernel * g.kernel;
    // One image: its planes padded into `padded`, then its groups of output channels, split
    // over the team's threads when `threaded`, each computed in the thread's scratch.
    let one_image = |image: usize,
                     src: &[f32],
                     dst: &mut [MaybeUninit<f32>],
                     padded: &mut [f32],
                     threaded: bool| {
        // Each plane's phases are shared out over the threads: a stem's three planes, shared
        // out whole, left one thread two of them (FaceMesh: 86 µs against 45 at two threads).
        let ip = g.in_plane();
        let mut phases: Vec<_> = padded
            .chunks_mut(layout.len)
            .zip(src.chunks(ip))
            .flat_map(|(padded, src)| layout.phases(g, padded).map(move |p| (src, p)))
            .collect();
        let min = grain(layout.rows * layout.cols);
        for_each_chunk(&mut phases, 1, min, |_, phases| {
            for (src, (phase, plane)) in phases {
                Vectorized::Pad(g, &layout, src, (*phase, plane)).run()
            }
        });
        let input = DirectInput {
            planes: padded,
            len: layout.len,
            taps: &layout.taps,
            outputs: layout.outputs,
        };
        let share = team_share(image_macs, groups)
            .filter(|_| threaded)
            .unwrap_or(groups);
        let flat = if in_place {
            0
        } else {
            DIRECT_CHANNELS * layout.outputs
        };
        for_each_chunk(dst, share * DIRECT_CHANNELS * op, 1, |task, dst| {
            with_scratch(flat, |flat| {
                for (i, dst) in dst.chunks_mut(DIRECT_CHANNELS * op).enumerate() {
                    let group = task * share + i;
                    let task = DirectGroup {
                        sums: DirectSums {
                            input: &input,
                            weights: weight.group(group),
                        },
                        g,
                        cols: layout.cols,
                        rows,
                        first: group * DIRECT_CHANNELS,
                        image,
                        outputs,
                        epilogue,
                        bias,
                        residual,
                        in_place,
                    };
                    Vectorized::Direct(&task, dst, flat).run()
                }
            })
        });
    };
    let padded_len = g.channels * layout.len;
    let fill = |out: &mut [MaybeUninit<f32>]| {
        let (sizes, macs) = ((g.batch, in_len, out_len), g.batch * image_macs);
        for_each_image((input, out), sizes, macs, (&PADDED, padded_len), one_image)
    };
    // SAFETY: the input holds `g.batch` images of `in_len` values (asserted above), so the
    // `g.batch * out_len` outputs split into exactly `g.batch` chunks of `out_len`, one per
    // image; each image's chunk splits into its groups' `DIRECT_CHANNELS * op` values (the
    // last group's fewer), and `DirectGroup::run` writes every value of each.
    Some(unsafe { written(g.batch * out_len, fill) })
}

/// Where a direct convolution reads one image: its input planes (`planes`, `len` values each),
/// output index `i` (row-major, the pitch being the layout's) summing tap `t` of each plane at
/// `i + taps[t]`, for `outputs` indices per plane (a whole number of 16-value blocks).
struct DirectInput<'a> {
    planes: &'a [f32],
    len: usize,
    taps: &'a [usize],
    outputs: usize,
}

/// The sums of one group of [`DIRECT_CHANNELS`] output channels of a direct convolution over
/// an image's input, by the group's packed weights (`[input][tap][DIRECT_CHANNELS]`).
struct DirectSums<'a> {
    input: &'a DirectInput<'a>,
    weights: &'a [f32],
}

impl DirectSums<'_> {
    /// Computes the sums of output indices `range` (whole 16-value blocks), in blocks of up to
    /// three vectors, handing each channel's sums of a block to `store(channel, first index,
    /// sums)`, for all [`DIRECT_CHANNELS`] channels of the group.
    #[inline(always)]
    fn run<S: pulp::Simd>(
        &self,
        simd: S,
        range: std::ops::Range<usize>,
        mut store: impl FnMut(usize, usize, &[f32]),
    ) {
        let mut i = range.start;
        while i < range.end {
            i += match (range.end - i) / S::F32_LANES {
                3.. => self.block::<S, 3>(simd, i, &mut store),
                2 => self.block::<S, 2>(simd, i, &mut store),
                _ => self.block::<S, 1>(simd, i, &mut store),
            };
        }
    }

    /// The sums of indices `i..i + V * lanes` of the group's channels, `V` vectors of `simd`'s
    /// lanes per channel, handed to `store`; returns the indices done.
    #[inline(always)]
    fn block<S: pulp::Simd, const V: usize>(
        &self,
        simd: S,
        i: usize,
        store: &mut impl FnMut(usize, usize, &[f32]),
    ) -> usize {
        let (lanes, taps) = (S::F32_LANES, self.input.taps);
        let len = V * lanes;
        let mut acc = [[simd.splat_f32s(0.); V]; DIRECT_CHANNELS];
        let planes = self.input.planes.chunks_exact(self.input.len);
        for (plane, weights) in planes.zip(self.weights.chunks_exact(taps.len() * DIRECT_CHANNELS))
        {
            for (&tap, w) in taps.iter().zip(weights.as_chunks::<DIRECT_CHANNELS>().0) {
                let run = &plane[i + tap..i + tap + len];
                let x: [S::f32s; V] = std::array::from_fn(|v| load::<S>(&run[v * lanes..]));
                for (acc, &w) in acc.iter_mut().zip(w) {
                    let w = simd.splat_f32s(w);
                    for (a, &x) in acc.iter_mut().zip(&x) {
                        *a = simd.mul_add_e_f32s(x, w, *a);
                    }
                }
            }
        }
        for (c, acc) in acc.iter().enumerate() {
            store(c, i, pulp::bytemuck::cast_slice(acc));
        }
        len
    }
}

/// One group of output channels of [`conv2d_direct`]: its sums over the image's padded planes
/// (pitch `cols`), where its output planes' rows go, and what completes its outputs.
struct DirectGroup<'a> {
    sums: DirectSums<'a>,
    g: &'a Geometry,
    cols: usize,
    rows: PlaneRows,
    /// The group's first output channel, its image, and the layer's output channels.
    first: usize,
    image: usize,
    outputs: usize,
    epilogue: &'a Epilogue,
    bias: &'a [f32],
    residual: Option<Residual<'a>>,
    /// Whether the sums go straight into `dst`'s bordered planes (see [`Self::run_in_place`]).
    in_place: bool,
}

impl DirectGroup<'_> {
    /// Computes the group's output planes into `dst` (`[channels][plane]`, planes of `rows`,
    /// as many channels as it holds, at most [`DIRECT_CHANNELS`]), every value of it, channel
    /// `c` completed by its bias, activation and residual; `flat` holds `DIRECT_CHANNELS *
    /// outputs` values unless in place.
    #[inline(always)]
    fn run<S: pulp::Simd>(&self, simd: S, dst: &mut [MaybeUninit<f32>], flat: &mut [f32]) {
        if self.in_place {
            return self.run_in_place(simd, dst);
        }
        let n = self.sums.input.outputs;
        self.sums.run(simd, 0..n, |c, i, sums| {
            flat[c * n + i..c * n + i + sums.len()].copy_from_slice(sums)
        });
        let (p, rows) = (self.g.out_plane(), self.rows);
        let planes = dst.chunks_mut(rows.len).zip(flat.chunks_exact_mut(n));
        for (c, (plane, values)) in planes.enumerate() {
            let channel = self.first + c;
            let finish = Finishing {
                epilogue: self.epilogue,
                channel,
                bias: self.bias.get(channel).copied().unwrap_or(0.),
                residual: self
                    .residual
                    .and_then(|r| r.plane(self.image * self.outputs + channel, self.outputs, p)),
            };
            finish.write_plane(values, self.cols, (plane, rows));
        }
    }

    /// [`run`](Self::run) for bordered planes whose pitch is the layout's (`cols`) and no
    /// residual: output index `i` (row `i / cols`, column `i % cols`) is the plane's value at
    /// `rows.start + i`, so the sums are stored there, with no scratch plane and no copy, and
    /// completed in place. The indices past the output width land on the border columns, and
    /// those past the last row on the bottom border, which are zeroed after.
    #[inline(always)]
    fn run_in_place<S: pulp::Simd>(&self, simd: S, dst: &mut [MaybeUninit<f32>]) {
        let (rows, n) = (self.rows, self.sums.input.outputs);
        let channels = dst.len() / rows.len;
        self.sums.run(simd, 0..n, |c, i, sums| {
            if c < channels {
                let at = c * rows.len + rows.start + i;
                dst[at..at + sums.len()].write_copy_of_slice(sums);
            }
        });
        for (c, plane) in dst.chunks_mut(rows.len).enumerate() {
            let run = &mut plane[rows.start..rows.start + n];
            // SAFETY: the sums above wrote every index `0..n` of each of the group's planes
            // (`DirectSums::run` covers its whole range), so these values are initialised.
            let run = unsafe { &mut *(run as *mut [MaybeUninit<f32>] as *mut [f32]) };
            let channel = self.first + c;
            let bias = self.bias.get(channel).copied().unwrap_or(0.);
            finish_sum(self.epilogue, channel, run, bias, None);
            rows.clear_border(plane);
        }
    }
}

/// A dense 3x3 convolution (stride 1, one zero on every side) of `input` (`shape`, bordered) by
/// a packed `weight` with `bias` (`[O]`, or empty) and the activation, computed directly as
/// [`conv2d_direct`] does but reading each input plane in place, its border being the
/// padding, and writing the sums straight into the output's bordered planes: `[N, O, H, W]`,
/// bordered. An image splits over the team's threads by runs of output indices (a thread's
/// rows of every channel), each a whole number of 16-value blocks. `None` when the
/// weight is not a 3x3 kernel over `shape`'s channels, or when the plane is too narrow for the
/// last block of outputs to read inside it. Panics when `input` does not hold `shape`'s planes.
pub(crate) fn conv2d_direct_bordered(
    shape: &BorderedShape,
    input: &[f32],
    weight: &DirectWeight,
    bias: &[f32],
    epilogue: &Epilogue,
) -> Option<Vec<f32>> {
    let (c, h, w) = (shape.channels, shape.height, shape.width);
    let (plane, cols) = (shape.plane(), shape.cols());
    let outputs = (h * cols).next_multiple_of(DEPTHWISE_TAIL);
    // Output index `i` (row-major with pitch `cols`) sums the taps at `i + ky * cols + kx`: the
    // highest read, `outputs - 1 + 2 * cols + 2`, must lie inside the plane.
    let fits = outputs + 2 * cols + 2 <= plane;
    if weight.kernel != 3 || weight.inputs != c || h == 0 || w == 0 || !fits {
        return None;
    }
    assert_eq!(
        input.len(),
        shape.batch * c * plane,
        "conv2d_direct_bordered: input of the wrong size"
    );
    let taps = shape.taps();
    let image_macs = weight.outputs * h * w * c * 9;
    let blocks = outputs / DEPTHWISE_TAIL;
    let share = match split_batch(shape.batch, shape.batch * image_macs) {
        true => blocks,
        false => team_share(image_macs, blocks).unwrap_or(blocks),
    };
    let parts = blocks.div_ceil(share);
    let out_len = shape.batch * weight.outputs * plane;
    let fill = |out: &mut [MaybeUninit<f32>]| {
        let out = (SharedPtr(out.as_mut_ptr().cast::<f32>()), out.len());
        run_tasks(shape.batch * parts, &|t| {
            let (image, part) = (t / parts, t % parts);
            let first = part * share * DEPTHWISE_TAIL;
            let input = DirectInput {
                planes: &input[image * c * plane..(image + 1) * c * plane],
                len: plane,
                taps: &taps,
                outputs,
            };
            let task = BorderedDirect {
                shape,
                input,
                weight,
                bias,
                epilogue,
                image,
                range: first..(first + share * DEPTHWISE_TAIL).min(outputs),
            };
            Vectorized::DirectBordered(&task, out).run()
        })
    };
    // SAFETY: every part of every image runs once, and `BorderedDirect::run` writes all of
    // its part's values in each of the image's output planes (see there); the parts' ranges
    // cover `0..outputs`, and with the first part's values before it and the last part's
    // after it, every plane.
    Some(unsafe { written(out_len, fill) })
}

/// The output indices `range` (whole 16-value blocks) of image `image` of a
/// [`conv2d_direct_bordered`] convolution, in every output channel.
struct BorderedDirect<'a> {
    shape: &'a BorderedShape,
    input: DirectInput<'a>,
    weight: &'a DirectWeight,
    bias: &'a [f32],
    epilogue: &'a Epilogue,
    image: usize,
    range: std::ops::Range<usize>,
}

impl BorderedDirect<'_> {
    /// Computes the part's sums group by group, straight into `out` (the whole output, `len`
    /// values), then completes them: in each output plane of the image the values from `at(0,
    /// 0) + range.start` to `at(0, 0) + range.end`, their border columns zeroed, and also
    /// those before `at(0, 0)` for the first part and from `at(H, 0)` on for the last.
    #[inline(always)]
    fn run<S: pulp::Simd>(&self, simd: S, (out, len): (SharedPtr, usize)) {
        let (shape, o) = (self.shape, self.weight.outputs);
        let (plane, start, w) = (shape.plane(), shape.at(0, 0), shape.width);
        let (a, b) = (self.range.start, self.range.end);
        let image = self.image * o * plane;
        assert!(
            image + o * plane <= len && start + self.input.outputs <= plane,
            "conv2d_direct_bordered: output too short"
        );
        for group in 0..o.div_ceil(DIRECT_CHANNELS) {
            let sums = DirectSums {
                input: &self.input,
                weights: self.weight.group(group),
            };
            let first = group * DIRECT_CHANNELS;
            sums.run(simd, a..b, |c, i, sums| {
                if first + c < o {
                    let at = image + (first + c) * plane + start + i;
                    // SAFETY: `i + sums.len() <= b <= outputs`, so the values lie in the
                    // image's plane `first + c` (asserted), in this part's range, which no
                    // other task touches; the caller borrows the output mutably for the run.
                    unsafe { std::ptr::copy_nonoverlapping(sums.as_ptr(), out.at(at), sums.len()) }
                }
            });
        }
        for oc in 0..o {
            let dst = image + oc * plane;
            // SAFETY: the part's values of plane `oc`, which the sums just wrote (initialised)
            // and which only this task accesses (see above).
            let values = unsafe { std::slice::from_raw_parts_mut(out.at(dst + start + a), b - a) };
            finish_sum(
                self.epilogue,
                oc,
                values,
                self.bias.get(oc).copied().unwrap_or(0.),
                None,
            );
            // Columns `w` and `w + 1` of each row's pitch land on the border.
            let cols = shape.cols();
            for y in a / cols..b.div_ceil(cols) {
                let (lo, hi) = ((y * cols + w).max(a), ((y + 1) * cols).min(b));
                if lo < hi {
                    values[lo - a..hi - a].fill(0.);
                }
            }
            // SAFETY: the first part also writes `dst..dst + at(0, 0)`, the last one from `dst +
            // at(H, 0)` to the plane's end (over the sums of its run past the last row): outside
            // every other part's range, inside the output, touched by no other task.
            let bottom = shape.at(shape.height, 0);
            unsafe {
                if a == 0 {
                    std::ptr::write_bytes(out.at(dst), 0, start);
                }
                if b == self.input.outputs {
                    std::ptr::write_bytes(out.at(dst + bottom), 0, plane - bottom);
                }
            }
        }
    }
}

/// What follows a dense layer's product and bias: the activation (one without per-channel
/// parameters), then the residual (of the output's shape) if any.
pub(crate) struct DenseFinish<'a> {
    pub epilogue: &'a Epilogue,
    pub residual: Option<&'a [f32]>,
}

impl DenseFinish<'_> {
    /// Applies the activation to `out`, then adds the residual.
    fn run(&self, out: &mut [f32]) {
        Vectorized::Activation(self.epilogue, 0, out).run();
        if let Some(r) = self.residual {
            assert_eq!(r.len(), out.len(), "dense: residual of the wrong size");
            out.iter_mut().zip(r).for_each(|(v, r)| *v += r);
        }
    }
}

/// A dense layer: `input` (`rows x inputs`, row-major) times `weight_t` (`inputs x outputs`,
/// the transposed weight) plus `bias` (`[outputs]`, or empty), then `finish`: `rows x
/// outputs`.
pub(crate) fn dense(
    input: &[f32],
    weight_t: &[f32],
    bias: &[f32],
    (rows, inputs, outputs): (usize, usize, usize),
    finish: DenseFinish,
) -> Vec<f32> {
    let mut out = Vec::with_capacity(rows * outputs);
    for _ in 0..rows {
        if bias.is_empty() {
            out.extend(std::iter::repeat_n(0., outputs));
        } else {
            out.extend_from_slice(bias);
        }
    }
    matmul(
        Dst::Add(&mut out),
        input,
        weight_t,
        (rows, outputs, inputs),
        outputs,
        true,
    );
    finish.run(&mut out);
    out
}

/// A dense layer over columns: for each of `images` matrices of `input` (`inputs x cols`,
/// row-major), `weight` (`outputs x inputs`, row-major) times it, plus `bias` (`[outputs]`,
/// or empty) on each output row, then `finish`: `images x outputs x cols`.
pub(crate) fn dense_columns(
    input: &[f32],
    weight: &[f32],
    bias: &[f32],
    (images, inputs, outputs, cols): (usize, usize, usize, usize),
    finish: DenseFinish,
) -> Vec<f32> {
    let mut out = Vec::with_capacity(images * outputs * cols);
    for _ in 0..images {
        for o in 0..outputs {
            let b = bias.get(o).copied().unwrap_or(0.);
            out.extend(std::iter::repeat_n(b, cols));
        }
    }
    let (in_len, out_len) = (inputs * cols, outputs * cols);
    if in_len > 0 && out_len > 0 {
        for (src, dst) in input
            .chunks_exact(in_len)
            .zip(out.chunks_exact_mut(out_len))
        {
            matmul(
                Dst::Add(dst),
                weight,
                src,
                (outputs, cols, inputs),
                cols,
                true,
            );
        }
    }
    finish.run(&mut out);
    out
}

/// Outputs in one panel of a [`QuantizedWeight`]: one vector register of f32 on AVX-512.
const PANEL: usize = 16;

/// `values` (`rows x cols`, row-major, `rows * cols` of them) in panels of [`PANEL`] rows,
/// each column's values for the panel's rows side by side (`[panel][col][PANEL]`), the last
/// panel padded with zeros.
fn in_panels<T: Copy + Default>(values: &[T], (rows, cols): (usize, usize)) -> Vec<T> {
    let mut packed = vec![T::default(); rows.div_ceil(PANEL) * cols * PANEL];
    for (r, row) in values.chunks_exact(cols.max(1)).take(rows).enumerate() {
        for (c, &v) in row.iter().enumerate() {
            packed[panel_at(r, c, cols)] = v;
        }
    }
    packed
}

/// Where value `(row, col)` of a matrix of `cols` columns lies in its [`in_panels`] layout.
fn panel_at(row: usize, col: usize, cols: usize) -> usize {
    ((row / PANEL) * cols + col) * PANEL + row % PANEL
}

/// A dense layer's weight (`outputs x inputs`) as int8 values with a scale and a zero point
/// per block of `block` consecutive inputs of each output: weight `(o, i)` is `(q(o, i) -
/// zero(o, b)) * scale(o, b)` in f32, `b = i / block`, as ONNX `DequantizeLinear` computes it
/// with `block_size` on the input axis.
///
/// Held in panels of [`PANEL`] outputs (the last one padded with zero weights), each input's
/// values for the panel's outputs side by side, so that a product reads the int8 values in
/// order and every input value multiplies one register of weights; the scales and zero points
/// (as f32) side by side the same way, per block.
#[derive(Debug, Clone)]
pub(crate) struct QuantizedWeight {
    /// `[panel][input][PANEL]`.
    values: Vec<i8>,
    /// `[panel][block][PANEL]`.
    scales: Vec<f32>,
    /// `[panel][block][PANEL]`.
    zero_points: Vec<f32>,
    block: usize,
    outputs: usize,
    inputs: usize,
}

impl QuantizedWeight {
    /// The weight from `values` (`outputs x inputs`, row-major) and the `scales` and
    /// `zero_points` of each output's blocks (`outputs x inputs / block`, row-major), or what is
    /// inconsistent about them: `block` must divide `inputs`, and the lengths must match.
    pub fn new(
        values: &[i8],
        (outputs, inputs): (usize, usize),
        scales: &[f32],
        zero_points: &[i8],
        block: usize,
    ) -> Result<Self, String> {
        if block == 0 || inputs % block != 0 {
            return Err(format!(
                "blocks of {block} values do not divide {inputs} inputs"
            ));
        }
        let blocks = inputs / block;
        if values.len() != outputs * inputs
            || scales.len() != outputs * blocks
            || zero_points.len() != outputs * blocks
        {
            return Err(format!(
                "{} values, {} scales and {} zero points for a {outputs} x {inputs} weight in \
                 blocks of {block}",
                values.len(),
                scales.len(),
                zero_points.len()
            ));
        }
        let zero_points: Vec<f32> = zero_points.iter().map(|&z| z as f32).collect();
        Ok(Self {
            values: in_panels(values, (outputs, inputs)),
            scales: in_panels(scales, (outputs, blocks)),
            zero_points: in_panels(&zero_points, (outputs, blocks)),
            block,
            outputs,
            inputs,
        })
    }

    /// `(outputs, inputs)`.
    pub fn dims(&self) -> (usize, usize) {
        (self.outputs, self.inputs)
    }

    /// The dequantised weight, `outputs x inputs` row-major.
    pub fn dequantized(&self) -> Vec<f32> {
        let (n, blocks) = (self.inputs, self.inputs / self.block);
        let mut out = Vec::with_capacity(self.outputs * n);
        for o in 0..self.outputs {
            out.extend((0..n).map(|i| {
                let at = panel_at(o, i / self.block, blocks);
                let q = self.values[panel_at(o, i, n)] as f32;
                (q - self.zero_points[at]) * self.scales[at]
            }));
        }
        out
    }
}

/// The weight of a dense layer held in panels of [`PANEL`] outputs: block-quantised int8
/// values or f16 values.
#[derive(Debug, Clone)]
pub(crate) enum PackedWeight {
    Int8(QuantizedWeight),
    Half(HalfWeight),
}

impl PackedWeight {
    /// `(outputs, inputs)`.
    pub fn dims(&self) -> (usize, usize) {
        match self {
            Self::Int8(w) => w.dims(),
            Self::Half(w) => (w.outputs, w.inputs),
        }
    }

    /// The weight in f32, `outputs x inputs` row-major.
    pub fn dequantized(&self) -> Vec<f32> {
        match self {
            Self::Int8(w) => w.dequantized(),
            Self::Half(w) => w.dequantized(),
        }
    }
}

/// A dense layer: `input` (`rows x inputs`, row-major) times the packed weight transposed,
/// plus `bias` (`[outputs]`, or empty): `rows x outputs`. It reads the weight as it is
/// stored, int8 (a quarter of the bytes of f32) or f16 (half), whose reads bound a batch-1
/// dense layer; the panels are split over the team's threads.
pub(crate) fn dense_packed(
    input: &[f32],
    weight: &PackedWeight,
    bias: &[f32],
    rows: usize,
) -> Vec<f32> {
    let (outputs, inputs) = weight.dims();
    let input = &input[..rows * inputs];
    let panels = outputs.div_ceil(PANEL);
    // `[panel][row][PANEL]`, so that each task writes one run of whole panels.
    let mut out_p = vec![0f32; panels * rows * PANEL];
    if rows > 0 && inputs > 0 {
        let share = team_share(rows * inputs * outputs, panels).unwrap_or(panels);
        let chunk = share * rows * PANEL;
        match weight {
            PackedWeight::Int8(weight) => {
                let rows = QuantizedRows {
                    values: input,
                    rows,
                    block_sums: &input
                        .chunks_exact(weight.block)
                        .map(|x| lane_sum(x, |v| v))
                        .collect::<Vec<_>>(),
                };
                for_each_chunk(&mut out_p, chunk, 1, |t, part| {
                    Vectorized::Quantized(weight, &rows, t * share, part).run()
                });
            }
            PackedWeight::Half(weight) => {
                for_each_chunk(&mut out_p, chunk, 1, |t, part| {
                    half_panels(weight, (input, rows), t * share, part)
                });
            }
        }
    }
    let mut out = Vec::with_capacity(rows * outputs);
    for r in 0..rows {
        out.extend((0..outputs).map(|o| {
            out_p[((o / PANEL) * rows + r) * PANEL + o % PANEL] + bias.get(o).copied().unwrap_or(0.)
        }));
    }
    out
}

/// A dense layer's weight (`outputs x inputs`) as f16 values, as a `.tflite` converted with
/// float16 quantization stores it. Held in panels of [`PANEL`] outputs like a
/// [`QuantizedWeight`] (`[panel][input][PANEL]`, the last panel padded with zeros), as the
/// values' bits.
#[derive(Debug, Clone)]
pub(crate) struct HalfWeight {
    bits: Vec<u16>,
    outputs: usize,
    inputs: usize,
}

impl HalfWeight {
    /// The weight from `values` (`outputs x inputs`, row-major), or why they do not fit.
    pub fn new(values: &[half::f16], (outputs, inputs): (usize, usize)) -> Result<Self, String> {
        if values.len() != outputs * inputs {
            return Err(format!(
                "{} values for a {outputs} x {inputs} weight",
                values.len()
            ));
        }
        let bits: Vec<u16> = values.iter().map(|v| v.to_bits()).collect();
        Ok(Self {
            bits: in_panels(&bits, (outputs, inputs)),
            outputs,
            inputs,
        })
    }

    /// The weight in f32 (exactly), `outputs x inputs` row-major.
    pub fn dequantized(&self) -> Vec<f32> {
        let n = self.inputs;
        let mut out = Vec::with_capacity(self.outputs * n);
        for o in 0..self.outputs {
            out.extend((0..n).map(|i| half::f16::from_bits(self.bits[panel_at(o, i, n)]).to_f32()));
        }
        out
    }
}

/// The panels `first..` of an f16 [`dense_packed`] for the `rows` rows of `input`, into
/// `out_p` (`[panel][row][PANEL]`, as many panels as it holds).
fn half_panels(
    weight: &HalfWeight,
    (input, rows): (&[f32], usize),
    first: usize,
    out_p: &mut [f32],
) {
    let n = weight.inputs;
    let panels = weight.bits.chunks_exact(n * PANEL).skip(first);
    for (panel, out) in panels.zip(out_p.chunks_exact_mut(rows * PANEL)) {
        for (x, out) in input.chunks_exact(n).zip(out.chunks_exact_mut(PANEL)) {
            out.copy_from_slice(&half_sums(panel, x));
        }
    }
}

/// Independent sums per output that [`half_sums_v4`] keeps, so that its multiply-adds do not
/// wait on each other.
const HALF_UNROLL: usize = 8;

/// One panel's outputs for one row: the panel's f16 weights (`[input][PANEL]`) converted to
/// f32 (exactly) and multiplied by the row's inputs `x`, summed in f32; on AVX-512 by
/// [`half_sums_v4`], with AVX2 and F16C by [`half_sums_v3`], elsewhere by
/// [`half_sums_widened`].
fn half_sums(panel: &[u16], x: &[f32]) -> [f32; PANEL] {
    #[cfg(target_arch = "x86_64")]
    {
        if let Some(simd) = pulp::x86::V4::try_new() {
            return simd.vectorize(|| half_sums_v4(simd, panel, x));
        }
        if has_f16c() {
            // SAFETY: the CPU has AVX2, FMA and F16C (`has_f16c`), the features the function
            // is compiled for.
            return unsafe { half_sums_v3(panel, x) };
        }
    }
    half_sums_widened(panel, x)
}

/// Whether the CPU has AVX2, FMA and F16C, which [`half_sums_v3`] needs.
#[cfg(target_arch = "x86_64")]
fn has_f16c() -> bool {
    is_x86_feature_detected!("avx2")
        && is_x86_feature_detected!("fma")
        && is_x86_feature_detected!("f16c")
}

/// [`half_sums`] with AVX2, FMA and F16C: each input's 16 weights converted by two
/// `vcvtph2ps` into two vectors of 8, times the broadcast input, added to one of
/// [`HALF_UNROLL`] / 2 pairs of registers of sums, which are added together at the end.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma,f16c")]
fn half_sums_v3(panel: &[u16], x: &[f32]) -> [f32; PANEL] {
    use std::arch::x86_64::{
        __m128i, __m256, _mm256_add_ps, _mm256_cvtph_ps, _mm256_fmadd_ps, _mm256_set1_ps,
        _mm256_setzero_ps,
    };
    const PAIRS: usize = HALF_UNROLL / 2;
    let (weights, _) = panel.as_chunks::<PANEL>();
    let mut sums = [[_mm256_setzero_ps(); 2]; PAIRS];
    for (k, (w, &x)) in weights.iter().zip(x).enumerate() {
        let halves: [[u16; 8]; 2] = pulp::cast(*w);
        let x = _mm256_set1_ps(x);
        for (s, h) in sums[k % PAIRS].iter_mut().zip(halves) {
            let w = _mm256_cvtph_ps(pulp::cast::<[u16; 8], __m128i>(h));
            *s = _mm256_fmadd_ps(x, w, *s);
        }
    }
    let mut total: [__m256; 2] = [_mm256_setzero_ps(); 2];
    for pair in sums {
        for (t, s) in total.iter_mut().zip(pair) {
            *t = _mm256_add_ps(*t, s);
        }
    }
    pulp::cast(total)
}

/// [`half_sums`] without AVX-512: the panel converted to f32 in a scratch buffer by `half`'s
/// slice conversion (F16C where the CPU has it), then summed by [`panel_sums`].
fn half_sums_widened(panel: &[u16], x: &[f32]) -> [f32; PANEL] {
    use half::slice::{HalfBitsSliceExt, HalfFloatSliceExt};
    with_scratch(panel.len(), |weights| {
        panel
            .reinterpret_cast::<half::f16>()
            .convert_to_f32_slice(weights);
        let mut sums = [0f32; PANEL];
        Vectorized::PanelSums(weights, x, &mut sums).run();
        sums
    })
}

/// `sums[l] = sum over k of weights[k][l] * x[k]`, `weights` `[input][PANEL]` in f32: one sum
/// per output, the inputs in order.
#[inline(always)]
fn panel_sums(weights: &[f32], x: &[f32], sums: &mut [f32; PANEL]) {
    for (weights, &x) in weights.chunks_exact(PANEL).zip(x) {
        for (s, &w) in sums.iter_mut().zip(weights) {
            *s = w.mul_add(x, *s);
        }
    }
}

/// [`half_sums`] on AVX-512: each input's 16 weights converted by one `vcvtph2ps`, times the
/// broadcast input, added to one of [`HALF_UNROLL`] registers of sums (inputs `k` to sum
/// `k % HALF_UNROLL`), which are added together at the end.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
fn half_sums_v4(simd: pulp::x86::V4, panel: &[u16], x: &[f32]) -> [f32; PANEL] {
    use std::arch::x86_64::{__m256i, __m512};
    let avx = simd.avx512f;
    let (weights, _) = panel.as_chunks::<PANEL>();
    let (steps, last_weights) = weights.as_chunks::<HALF_UNROLL>();
    let (xs, last_xs) = x.as_chunks::<HALF_UNROLL>();
    let mut sums = [avx._mm512_setzero_ps(); HALF_UNROLL];
    for (step, xs) in steps.iter().zip(xs) {
        for ((s, w), &x) in sums.iter_mut().zip(step).zip(xs) {
            let w = avx._mm512_cvtph_ps(pulp::cast::<[u16; PANEL], __m256i>(*w));
            *s = avx._mm512_fmadd_ps(avx._mm512_set1_ps(x), w, *s);
        }
    }
    for ((s, w), &x) in sums.iter_mut().zip(last_weights).zip(last_xs) {
        let w = avx._mm512_cvtph_ps(pulp::cast::<[u16; PANEL], __m256i>(*w));
        *s = avx._mm512_fmadd_ps(avx._mm512_set1_ps(x), w, *s);
    }
    let [a, b, c, d, e, f, g, h] = sums;
    let total: __m512 = avx._mm512_add_ps(
        avx._mm512_add_ps(avx._mm512_add_ps(a, b), avx._mm512_add_ps(c, d)),
        avx._mm512_add_ps(avx._mm512_add_ps(e, f), avx._mm512_add_ps(g, h)),
    );
    pulp::cast(total)
}

/// The panels `first..` of an int8 [`dense_packed`] for the `rows` rows of `input`, into `out_p`
/// (`[panel][row][PANEL]`, as many panels as it holds).
#[inline(always)]
fn quantized_panels(
    weight: &QuantizedWeight,
    input: &QuantizedRows,
    first: usize,
    out_p: &mut [f32],
) {
    for (i, out) in out_p.chunks_exact_mut(input.rows * PANEL).enumerate() {
        let mut r = 0;
        while r < input.rows {
            r += match input.rows - r {
                4.. => quantized_tile::<4>(weight, first + i, (input, r), out),
                _ => quantized_tile::<1>(weight, first + i, (input, r), out),
            };
        }
    }
}

/// The input of an int8 [`dense_packed`]: `rows` rows of the layer's inputs, and the sum of each
/// row's values over each block of the weight (`[row][block]`).
struct QuantizedRows<'a> {
    values: &'a [f32],
    rows: usize,
    block_sums: &'a [f32],
}

/// Inputs taken together by [`quantized_tile`]: that many independent sums per row, so that
/// one row's multiply-adds do not wait on each other.
const QUANTIZED_UNROLL: usize = 4;

/// Rows `row..row + R` of `input` times panel `panel`, into `out` (`[row][PANEL]`, the
/// panel's part of the output); returns `R`. In each block the int8 values (exact in f32)
/// multiply one broadcast input value per row; the zero points times the rows' block sums
/// come off the block's sums, which are then scaled by its scales: the dequantised products,
/// grouped by block.
#[inline(always)]
fn quantized_tile<const R: usize>(
    weight: &QuantizedWeight,
    panel: usize,
    (input, row): (&QuantizedRows, usize),
    out: &mut [f32],
) -> usize {
    let (n, block) = (weight.inputs, weight.block);
    let blocks = n / block;
    let mut totals = [[0f32; PANEL]; R];
    for b in 0..blocks {
        let (start, end) = (b * block, (b + 1) * block);
        let values = &weight.values[(panel * n + start) * PANEL..(panel * n + end) * PANEL];
        let xs: [&[f32]; R] =
            std::array::from_fn(|i| &input.values[(row + i) * n + start..(row + i) * n + end]);
        let at = (panel * blocks + b) * PANEL;
        let (scale, zero) = (
            &weight.scales[at..at + PANEL],
            &weight.zero_points[at..at + PANEL],
        );
        let mut sums = [[[0f32; PANEL]; R]; QUANTIZED_UNROLL];
        let steps = values.chunks_exact(QUANTIZED_UNROLL * PANEL);
        let rest = steps.remainder();
        for (j, step) in steps.enumerate() {
            for (u, (sums, q)) in sums.iter_mut().zip(step.chunks_exact(PANEL)).enumerate() {
                quantized_step(sums, q, &xs, j * QUANTIZED_UNROLL + u);
            }
        }
        let done = block / QUANTIZED_UNROLL * QUANTIZED_UNROLL;
        for (j, q) in rest.chunks_exact(PANEL).enumerate() {
            quantized_step(&mut sums[0], q, &xs, done + j);
        }
        for (i, total) in totals.iter_mut().enumerate() {
            let x_sum = input.block_sums[(row + i) * blocks + b];
            for (l, (t, (s, z))) in total.iter_mut().zip(scale.iter().zip(zero)).enumerate() {
                let sum: f32 = sums.iter().map(|u| u[i][l]).sum();
                *t = s.mul_add(z.mul_add(-x_sum, sum), *t);
            }
        }
    }
    for (out, total) in out[row * PANEL..(row + R) * PANEL]
        .chunks_exact_mut(PANEL)
        .zip(&totals)
    {
        out.copy_from_slice(total);
    }
    R
}

/// Input `k` of a block of [`quantized_tile`]: the panel's int8 weights of it (`values`,
/// `PANEL` of them) times `xs[i][k]`, added to `sums[i]`.
#[inline(always)]
fn quantized_step<const R: usize>(
    sums: &mut [[f32; PANEL]; R],
    values: &[i8],
    xs: &[&[f32]; R],
    k: usize,
) {
    let mut w = [0f32; PANEL];
    for (w, &q) in w.iter_mut().zip(values) {
        *w = q as f32;
    }
    for (sums, x) in sums.iter_mut().zip(xs) {
        let x = x[k];
        sums.iter_mut()
            .zip(&w)
            .for_each(|(a, w)| *a = w.mul_add(x, *a));
    }
}

/// A layer norm of each row of `input` (rows of `scale.len()` values): `(x - mean) /
/// sqrt(var + eps) * scale + offset` (`offset` empty for none), the variance taken about the
/// mean.
pub(crate) fn layer_norm(input: &[f32], scale: &[f32], offset: &[f32], eps: f32) -> Vec<f32> {
    let c = scale.len().max(1);
    let mut out = input.to_vec();
    for_each_chunk(&mut out, c, grain(c), |_, row| {
        Vectorized::LayerNorm(row, scale, offset, eps).run()
    });
    out
}

/// The sum of `f(v)` over `values`, in 16 independent lanes so that it vectorises (a plain
/// `f32` sum is one sequential chain of additions).
#[inline(always)]
fn lane_sum(values: &[f32], f: impl Fn(f32) -> f32) -> f32 {
    let mut lanes = [0f32; 16];
    let chunks = values.chunks_exact(16);
    let tail: f32 = chunks.remainder().iter().map(|&v| f(v)).sum();
    for chunk in chunks {
        lanes.iter_mut().zip(chunk).for_each(|(l, &v)| *l += f(v));
    }
    lanes.iter().sum::<f32>() + tail
}

/// One row of [`layer_norm`], in place.
#[inline(always)]
fn layer_norm_row(row: &mut [f32], scale: &[f32], offset: &[f32], eps: f32) {
    let n = row.len().max(1) as f32;
    let mean = lane_sum(row, |v| v) / n;
    row.iter_mut().for_each(|v| *v -= mean);
    let var = lane_sum(row, |v| v * v) / n;
    let inv = 1. / (var + eps).sqrt();
    row.iter_mut().zip(scale).for_each(|(v, s)| *v *= inv * s);
    if !offset.is_empty() {
        row.iter_mut().zip(offset).for_each(|(v, o)| *v += o);
    }
}

/// One output position of a bilinear resize: its two input positions and the second's weight.
type Tap = (usize, usize, f32);

/// Bilinear resampling of each of `planes` planes of `input` (`from`, plain or bordered) to
/// planes of `to` (half-pixel centres; bordered for layers on bordered activations): every
/// input row resampled to the output's columns in the per-thread scratch, then each output
/// row blended from two of them. Both planes have at least one row and column.
pub(crate) fn resize_bilinear(
    input: &[f32],
    planes: usize,
    (from, to): (PlaneRows, PlaneRows),
) -> Vec<f32> {
    assert_eq!(
        input.len(),
        planes * from.len,
        "resize: input of the wrong size"
    );
    let (h, w) = (from.count, from.width);
    let (ys, xs) = (sample_positions(h, to.count), sample_positions(w, to.width));
    let doubling = doubles(&xs, w);
    let fill = |out: &mut [MaybeUninit<f32>]| {
        for_each_chunk(out, to.len, grain(to.len), |i, dst| {
            let src = &input[i * from.len..(i + 1) * from.len];
            with_scratch(h * to.width, |rows| {
                Vectorized::Resize((src, from), (&ys, &xs, doubling), rows, (dst, to)).run()
            })
        });
    };
    // SAFETY: the output's `planes` chunks of `to.len` values pair with the input's `planes`
    // planes of `from.len` (asserted above), and `resize_plane` writes every value of its
    // chunk.
    unsafe { written(planes * to.len, fill) }
}

/// One plane of [`resize_bilinear`]: `src` (a plane of `from`) into `dst` (a plane of `to`,
/// every value written: `ys` has `to.count` taps, and the zeros around the rows), `rows`
/// holding `from.count x to.width` values; `doubling` when the column taps `xs` are a 2x
/// upsampling's (see [`doubles`]).
#[inline(always)]
fn resize_plane(
    (src, from): (&[f32], PlaneRows),
    (ys, xs, doubling): (&[Tap], &[Tap], bool),
    rows: &mut [f32],
    (dst, to): (&mut [MaybeUninit<f32>], PlaneRows),
) {
    let ow = xs.len();
    let lines = (0..from.count).map(|y| &src[from.start + y * from.pitch..][..from.width]);
    for (line, out) in lines.zip(rows.chunks_exact_mut(ow)) {
        if doubling {
            double_row(line, out);
            continue;
        }
        for (v, &(x0, x1, t)) in out.iter_mut().zip(xs) {
            *v = line[x0] * (1. - t) + line[x1] * t;
        }
    }
    to.clear_ends(dst);
    for (oy, &(y0, y1, t)) in ys.iter().enumerate() {
        let (top, bottom) = (&rows[y0 * ow..][..ow], &rows[y1 * ow..][..ow]);
        for ((v, a), b) in to.row(dst, oy).iter_mut().zip(top).zip(bottom) {
            *v = MaybeUninit::new(a * (1. - t) + b * t);
        }
    }
}

/// Whether `xs` are the column taps of a 2x upsampling of `w` columns (`w >= 2`), with the
/// weights of half-pixel centres: output `2i` blends inputs `i - 1` and `i` by 0.25 and 0.75,
/// output `2i + 1` inputs `i` and `i + 1` by 0.75 and 0.25, the first and last outputs clamped
/// to the edge values.
fn doubles(xs: &[Tap], w: usize) -> bool {
    w >= 2
        && xs.len() == 2 * w
        && xs.iter().enumerate().all(|(d, &tap)| {
            let i = d / 2;
            tap == match (d % 2, i) {
                (0, 0) => (0, 1, 0.),
                (0, _) => (i - 1, i, 0.75),
                (_, i) if i + 1 == w => (i, i, 0.),
                _ => (i, i + 1, 0.25),
            }
        })
}

/// One row of a 2x upsampling (taps as [`doubles`] checks them): `line` (`w >= 2` values) into
/// `out` (`2w`), each value `a * (1 - t) + b * t` exactly as the general loop computes it, but
/// from contiguous runs of `line` rather than per-output gathers.
#[inline(always)]
fn double_row(line: &[f32], out: &mut [f32]) {
    let w = line.len();
    let (quarter, three) = (1. - 0.75f32, 1. - 0.25f32);
    out[0] = line[0] * (1. - 0.) + line[1] * 0.;
    let inner = out[1..2 * w - 1].chunks_exact_mut(2);
    for (pair, (&a, &b)) in inner.zip(line.iter().zip(&line[1..])) {
        // Outputs 2i + 1 (inputs i and i + 1 by 0.75 and 0.25) and 2i + 2 (the same inputs by
        // 0.25 and 0.75), for i in 0..w - 1.
        pair[0] = a * three + b * 0.25;
        pair[1] = a * quarter + b * 0.75;
    }
    out[2 * w - 1] = line[w - 1] * (1. - 0.) + line[w - 1] * 0.;
}

thread_local! {
    /// Each thread's im2col matrix, kept between calls so that it is allocated (and zeroed)
    /// once rather than per convolution; im2col overwrites every value it uses.
    static SCRATCH: std::cell::RefCell<Vec<f32>> = const { std::cell::RefCell::new(Vec::new()) };
    /// Each thread's padded input planes of a direct convolution, kept the same way; they are
    /// read by the team's threads while each computes in its own [`SCRATCH`].
    static PADDED: std::cell::RefCell<Vec<f32>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// Runs `f` on `len` values of this thread's scratch buffer (their contents unspecified).
fn with_scratch<R>(len: usize, f: impl FnOnce(&mut [f32]) -> R) -> R {
    with_buffer(&SCRATCH, len, f)
}

/// A per-thread buffer of values kept between calls.
type ScratchKey = std::thread::LocalKey<std::cell::RefCell<Vec<f32>>>;

/// Runs `f` on `len` values of this thread's `buffer`, grown as needed and kept for the next
/// call.
fn with_buffer<R>(buffer: &'static ScratchKey, len: usize, f: impl FnOnce(&mut [f32]) -> R) -> R {
    buffer.with(|cell| {
        let mut buf = cell.take();
        if buf.len() < len {
            buf.resize(len, 0.);
        }
        let result = f(&mut buf[..len]);
        cell.replace(buf);
        result
    })
}

/// A depthwise convolution of `input` (`[N, C, H, W]`) by `weight` (`[C, 1, k, k]`, flattened)
/// with `bias` (`[C]`, or empty), the activation and the residual: `[N, C, OH, OW]`, the planes
/// in parallel. `None` for a kernel larger than [`MAX_DEPTHWISE_KERNEL`].
pub(crate) fn depthwise(
    g: &Geometry,
    input: &[f32],
    weight: &[f32],
    bias: &[f32],
    epilogue: &Epilogue,
    residual: Option<Residual>,
) -> Option<Vec<f32>> {
    let k = g.kernel;
    if k > MAX_DEPTHWISE_KERNEL {
        return None;
    }
    let layout = PhaseLayout::new(g, 0);
    Some(planes(g, input, |plane| {
        let c = plane % g.channels;
        PlaneOp::Convolve {
            layout: &layout,
            ker: &weight[c * k * k..(c + 1) * k * k],
            finish: Finishing {
                epilogue,
                channel: c,
                bias: bias.get(c).copied().unwrap_or(0.),
                residual: residual.and_then(|r| r.plane(plane, g.channels, g.out_plane())),
            },
        }
    }))
}

/// Pooling of `input` (`[N, C, H, W]`) over each `k x k` window: its maximum, or the mean of the
/// window's values inside the input; padding never counts.
pub(crate) fn pool(g: &Geometry, input: &[f32], max: bool) -> Vec<f32> {
    planes(g, input, |_| if max { PlaneOp::Max } else { PlaneOp::Mean })
}

/// Runs one [`PlaneOp`] per plane of `input`, in parallel: `[N, C, OH, OW]`.
fn planes<'a>(g: &Geometry, input: &[f32], op: impl Fn(usize) -> PlaneOp<'a> + Sync) -> Vec<f32> {
    let planes = g.batch * g.channels;
    assert_eq!(
        input.len(),
        planes * g.in_plane(),
        "planes: input of the wrong size"
    );
    let xs: Vec<_> = (0..g.kernel)
        .map(|kx| g.valid(g.out_width, kx, g.left, g.width))
        .collect();
    let fill = |out: &mut [MaybeUninit<f32>]| {
        let ip = g.in_plane();
        let work = g.out_plane() * g.kernel * g.kernel;
        for_each_chunk(out, g.out_plane(), grain(work), |plane, dst| {
            let src = &input[plane * ip..(plane + 1) * ip];
            let plane = Plane {
                g,
                xs: &xs,
                op: op(plane),
            };
            let scratch = match &plane.op {
                PlaneOp::Convolve { layout, .. } => layout.scratch(),
                _ => g.out_width,
            };
            with_scratch(scratch, |buf| {
                Vectorized::Plane(&plane, src, dst, buf).run()
            });
        });
    };
    // SAFETY: the output's `planes` chunks of `out_plane` values pair with the input's
    // `planes` planes (asserted above), and `Plane::run` writes all of its chunk (see there).
    unsafe { written(planes * g.out_plane(), fill) }
}

/// What a per-plane kernel computes over each window.
enum PlaneOp<'a> {
    /// A depthwise convolution with the plane's `k x k` kernel, then its bias, activation and
    /// residual.
    Convolve {
        layout: &'a PhaseLayout,
        ker: &'a [f32],
        finish: Finishing<'a>,
    },
    /// The window's maximum.
    Max,
    /// The mean of the window's values inside the input.
    Mean,
}

/// One plane of a depthwise convolution or pooling.
struct Plane<'a> {
    g: &'a Geometry,
    /// The valid output columns of each kernel column.
    xs: &'a [std::ops::Range<usize>],
    op: PlaneOp<'a>,
}

/// The zero-padded input plane of a depthwise convolution, as every plane of a layer lays it
/// out: split into `stride x stride` phase planes (padded row `y`, column `x` is row
/// `y / stride`, column `x / stride` of phase plane `(y % stride, x % stride)`), each `rows x
/// cols`. Output `(oy, ox)`'s tap `(ky, kx)` then reads index `oy * cols + ox + taps[ky * k +
/// kx]`, so the outputs of the whole plane, computed with a row pitch of `cols` (the columns
/// past the output width are computed and dropped), are one contiguous run per tap.
struct PhaseLayout {
    rows: usize,
    cols: usize,
    /// Where each tap reads for output index 0, row-major.
    taps: Vec<usize>,
    /// Values of the padded buffer: the phase planes and room for the last block's reads.
    len: usize,
    /// Outputs computed per plane: `out_height * cols` rounded up to a whole block.
    outputs: usize,
}

/// Outputs of a depthwise plane computed together, in registers, across all taps.
const DEPTHWISE_BLOCK: usize = 64;
/// The smallest block, for a plane's last outputs.
const DEPTHWISE_TAIL: usize = 16;

impl PhaseLayout {
    /// The layout of `g`'s padded input, with a row pitch of at least `min_cols`.
    fn new(g: &Geometry, min_cols: usize) -> Self {
        let (s, k) = (g.stride, g.kernel);
        let rows = g.out_height + (k - 1) / s;
        let cols = (g.out_width + (k - 1) / s).max(min_cols);
        let taps: Vec<usize> = (0..k * k)
            .map(|t| {
                let (ky, kx) = (t / k, t % k);
                ((ky % s) * s + kx % s) * rows * cols + (ky / s) * cols + kx / s
            })
            .collect();
        let outputs = (g.out_height * cols).next_multiple_of(DEPTHWISE_TAIL);
        let last_read = taps.iter().max().copied().unwrap_or(0) + outputs;
        Self {
            rows,
            cols,
            len: last_read.max(s * s * rows * cols),
            taps,
            outputs,
        }
    }

    /// Values of a plane's scratch buffer: the padded plane and the outputs.
    fn scratch(&self) -> usize {
        self.len + self.outputs
    }

    /// Writes plane `src` (`H x W`) into `padded` (`len` values) with its zero padding: each
    /// phase plane's rows and columns that lie on the input copied, and only the rest zeroed.
    #[inline(always)]
    fn fill(&self, g: &Geometry, src: &[f32], padded: &mut [f32]) {
        for (phase, plane) in self.phases(g, padded) {
            self.fill_phase(g, src, phase, plane);
        }
    }

    /// `padded`'s (`len` values) phase planes with their indices, the last one running on to
    /// the end of `padded` (the room for the last block's reads): the parts [`fill_phase`]
    /// writes, which a direct convolution's padding shares out over the threads.
    ///
    /// [`fill_phase`]: Self::fill_phase
    fn phases<'p>(
        &self,
        g: &Geometry,
        padded: &'p mut [f32],
    ) -> impl Iterator<Item = (usize, &'p mut [f32])> {
        let (last, plane) = (g.stride * g.stride - 1, self.rows * self.cols);
        let (head, tail) = padded.split_at_mut(last * plane);
        head.chunks_exact_mut(plane)
            .enumerate()
            .chain(std::iter::once((last, tail)))
    }

    /// Writes phase plane `phase` of plane `src` (`H x W`) into `plane` (its `rows x cols`
    /// values, then zeros to its end).
    #[inline(always)]
    fn fill_phase(&self, g: &Geometry, src: &[f32], phase: usize, plane: &mut [f32]) {
        let (s, rows, cols) = (g.stride, self.rows, self.cols);
        let (plane, tail) = plane.split_at_mut(rows * cols);
        tail.fill(0.);
        let (py, px) = (phase / s, phase % s);
        // Phase row `r` is padded row `r * s + py`, input row `r * s + py - top`; phase
        // column `j` input column `j * s + px - left`: inside the input for `ys` and `js`.
        let ys = g.valid(rows, py, g.top, g.height);
        let js = g.valid(cols, px, g.left, g.width);
        if js.is_empty() {
            plane.fill(0.);
            return;
        }
        plane[..ys.start * cols].fill(0.);
        plane[ys.end.max(ys.start) * cols..].fill(0.);
        for r in ys {
            let line = &mut plane[r * cols..(r + 1) * cols];
            line[..js.start].fill(0.);
            line[js.end..].fill(0.);
            let (iy, x0) = (r * s + py - g.top, js.start * s + px - g.left);
            strided_copy(&mut line[js.clone()], &src[iy * g.width + x0..], s);
        }
    }
}

/// What completes each output row of a depthwise or direct convolution's plane (see
/// [`finish_sum`]); the residual is the whole plane's.
#[derive(Clone, Copy)]
struct Finishing<'a> {
    epilogue: &'a Epilogue,
    channel: usize,
    bias: f32,
    residual: Option<(&'a [f32], bool)>,
}

/// Where the `count` rows of `width` values of a plane of `len` values lie: row `y` at
/// `start + y * pitch`, with zeros before, between and after the rows when a kernel writes the
/// plane (a bordered plane's border; plain rows have none).
#[derive(Clone, Copy)]
pub(crate) struct PlaneRows {
    start: usize,
    pitch: usize,
    count: usize,
    width: usize,
    len: usize,
}

impl PlaneRows {
    /// The rows of a `height x width` plane, in the bordered layout (see [`BorderedShape`])
    /// when `bordered`, else one after the other.
    pub(crate) fn new((height, width): (usize, usize), bordered: bool) -> Self {
        if !bordered {
            return Self {
                start: 0,
                pitch: width,
                count: height,
                width,
                len: height * width,
            };
        }
        let shape = BorderedShape {
            batch: 1,
            channels: 1,
            height,
            width,
        };
        Self {
            start: shape.at(0, 0),
            pitch: shape.cols(),
            count: height,
            width,
            len: shape.plane(),
        }
    }

    /// Row `y` of the plane `dst` (`len` values), its `width` values to be written, the rest
    /// of its pitch (the border, when bordered) zeroed.
    #[inline(always)]
    fn row<'a>(&self, dst: &'a mut [MaybeUninit<f32>], y: usize) -> &'a mut [MaybeUninit<f32>] {
        let at = self.start + y * self.pitch;
        let (row, rest) = dst[at..at + self.pitch].split_at_mut(self.width);
        rest.fill(MaybeUninit::new(0.));
        row
    }

    /// Zeroes everything of the plane `dst` but its rows' `width` values: the values before
    /// the first row and after the last, and the rest of each row's pitch.
    #[inline(always)]
    fn clear_border(&self, dst: &mut [MaybeUninit<f32>]) {
        self.clear_ends(dst);
        for y in 0..self.count {
            self.row(dst, y);
        }
    }

    /// Zeroes the values of the plane `dst` before its first row and after its last.
    #[inline(always)]
    fn clear_ends(&self, dst: &mut [MaybeUninit<f32>]) {
        let zero = MaybeUninit::new(0.);
        dst[..self.start].fill(zero);
        dst[self.start + self.count * self.pitch..].fill(zero);
    }
}

impl Finishing<'_> {
    /// Completes a plane computed with row pitch `cols` (`values`; the first `rows.width` of
    /// each row are outputs, the rest dropped) and writes it into `dst` (a plane of `rows`),
    /// every value: the rows, and zeros around them.
    #[inline(always)]
    fn write_plane(
        &self,
        values: &mut [f32],
        cols: usize,
        (dst, rows): (&mut [MaybeUninit<f32>], PlaneRows),
    ) {
        let ow = rows.width;
        rows.clear_ends(dst);
        for (oy, values) in values.chunks_mut(cols).take(rows.count).enumerate() {
            let values = &mut values[..ow];
            let residual = self
                .residual
                .and_then(|(r, a)| Some((r.get(oy * ow..(oy + 1) * ow)?, a)));
            finish_sum(self.epilogue, self.channel, values, self.bias, residual);
            rows.row(dst, oy).write_copy_of_slice(values);
        }
    }
}

/// One depthwise plane with a `K x K` kernel `ker` (row-major) from `src` into `dst`, every
/// row of which it writes, completed by `finish`; `scratch` holds [`PhaseLayout::scratch`]
/// values.
#[inline(always)]
fn depthwise_plane<const K: usize>(
    g: &Geometry,
    layout: &PhaseLayout,
    (src, ker): (&[f32], &[f32]),
    (dst, scratch): (&mut [MaybeUninit<f32>], &mut [f32]),
    finish: Finishing,
) {
    let (padded, flat) = scratch.split_at_mut(layout.len);
    layout.fill(g, src, padded);
    depthwise_outputs::<K>(padded, (&layout.taps, ker), flat);
    let rows = PlaneRows::new((g.out_height, g.out_width), false);
    finish.write_plane(flat, layout.cols, (dst, rows));
}

/// The sums of products of a depthwise plane's outputs `flat`: output `i`'s tap `t` (row-major
/// over the `K x K` window) reads `padded[i + taps[t]]` with weight `ker[t]`. Blocks of
/// [`DEPTHWISE_BLOCK`], then of [`DEPTHWISE_TAIL`], outputs held in registers across the taps;
/// the last few outputs one by one, in the same order of taps.
#[inline(always)]
fn depthwise_outputs<const K: usize>(
    padded: &[f32],
    (taps, ker): (&[usize], &[f32]),
    flat: &mut [f32],
) {
    let mut offsets = [[0usize; K]; K];
    let mut weights = [[0f32; K]; K];
    for (t, (&tap, &w)) in taps.iter().zip(ker).enumerate().take(K * K) {
        offsets[t / K][t % K] = tap;
        weights[t / K][t % K] = w;
    }
    let mut i = 0;
    while i + DEPTHWISE_BLOCK <= flat.len() {
        i += depthwise_block::<K, DEPTHWISE_BLOCK>(padded, &offsets, &weights, i, flat);
    }
    while i + DEPTHWISE_TAIL <= flat.len() {
        i += depthwise_block::<K, DEPTHWISE_TAIL>(padded, &offsets, &weights, i, flat);
    }
    // The last values in one more vector, overlapping the previous one (whose values it
    // computes again, the same), rather than one at a time.
    if i < flat.len() && flat.len() >= DEPTHWISE_TAIL {
        i = flat.len() - DEPTHWISE_TAIL;
        i += depthwise_block::<K, DEPTHWISE_TAIL>(padded, &offsets, &weights, i, flat);
    }
    for (j, v) in flat.iter_mut().enumerate().skip(i) {
        let mut acc = 0f32;
        for (offsets, weights) in offsets.iter().zip(&weights) {
            for (&tap, &w) in offsets.iter().zip(weights) {
                acc = padded[j + tap].mul_add(w, acc);
            }
        }
        *v = acc;
    }
}

/// Outputs `i..i + L` of a depthwise plane (row pitch `cols`) into `flat`; returns `L`.
#[inline(always)]
fn depthwise_block<const K: usize, const L: usize>(
    padded: &[f32],
    taps: &[[usize; K]; K],
    weights: &[[f32; K]; K],
    i: usize,
    flat: &mut [f32],
) -> usize {
    let mut acc = [0f32; L];
    for (taps, weights) in taps.iter().zip(weights) {
        for (&tap, &w) in taps.iter().zip(weights) {
            let run = &padded[i + tap..i + tap + L];
            acc.iter_mut()
                .zip(run)
                .for_each(|(a, v)| *a = v.mul_add(w, *a));
        }
    }
    flat[i..i + L].copy_from_slice(&acc);
    L
}

/// The shape of activations in the bordered layout of [`layers::Bordered`](crate::layers::Bordered):
/// `batch` images of `channels` planes, each `height x width` plane stored as `(height + 3) x
/// (width + 2)` values, the plane in rows `1..=height` and columns `1..=width` and zeros around
/// it (one row above, two below, one column either side).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct BorderedShape {
    pub batch: usize,
    pub channels: usize,
    pub height: usize,
    pub width: usize,
}

impl BorderedShape {
    /// The row pitch of a bordered plane.
    fn cols(&self) -> usize {
        self.width + 2
    }

    /// Values of one bordered plane.
    fn plane(&self) -> usize {
        (self.height + 3) * self.cols()
    }

    /// The offsets of a 3x3 window's taps from its top-left value in a bordered plane,
    /// row-major (written out: the kernels that call it run inside the vectorised dispatch,
    /// where a closure that builds the array need not be inlined).
    #[inline(always)]
    fn taps(&self) -> [usize; 9] {
        let cols = self.cols();
        [
            0,
            1,
            2,
            cols,
            cols + 1,
            cols + 2,
            2 * cols,
            2 * cols + 1,
            2 * cols + 2,
        ]
    }

    /// Where row `y`, column `x` of a plane lies in its bordered plane (`x` up to `width + 1`,
    /// where the next row's left border follows).
    fn at(&self, y: usize, x: usize) -> usize {
        (y + 1) * self.cols() + 1 + x
    }
}

/// `input` (`[N, C, H, W]`) in the bordered layout of `shape`. Panics when `input` does not
/// hold `shape`'s planes or a plane is empty.
pub(crate) fn border(shape: &BorderedShape, input: &[f32]) -> Vec<f32> {
    let (h, w, plane) = (shape.height, shape.width, shape.plane());
    let planes = shape.batch * shape.channels;
    assert!(
        h > 0 && w > 0 && input.len() == planes * h * w,
        "border: input of the wrong size"
    );
    let rows = PlaneRows::new((h, w), true);
    let fill = |out: &mut [MaybeUninit<f32>]| {
        for_each_chunk(out, plane, grain(plane), |i, dst| {
            rows.clear_ends(dst);
            for (y, line) in input[i * h * w..(i + 1) * h * w]
                .chunks_exact(w)
                .enumerate()
            {
                rows.row(dst, y).write_copy_of_slice(line);
            }
        })
    };
    // SAFETY: the output splits into `planes` chunks of `plane` values, and each chunk is
    // written whole: `0..at(0, 0)`, then for each row `y` the run `at(y, 0)..at(y, 0) + w + 2
    // = at(y + 1, 0)`, then `at(h, 0)..plane`.
    unsafe { written(planes * plane, fill) }
}

/// Zeroes the border of every plane of `values` (`shape`, bordered): the parts a pointwise
/// product over whole bordered planes wrote there. Panics when `values` does not hold
/// `shape`'s planes.
pub(crate) fn clear_border(shape: &BorderedShape, values: &mut [f32]) {
    let (h, w, plane) = (shape.height, shape.width, shape.plane());
    assert_eq!(
        values.len(),
        shape.batch * shape.channels * plane,
        "clear_border: values of the wrong size"
    );
    for_each_chunk(values, plane, grain(plane), |_, plane| {
        plane[..shape.at(0, 0)].fill(0.);
        for y in 0..h {
            plane[shape.at(y, w)..shape.at(y + 1, 0)].fill(0.);
        }
        plane[shape.at(h, 0)..].fill(0.);
    });
}

/// The planes of `input`, in the bordered layout of `shape`, without their border: `[N, C, H,
/// W]`. Panics when `input` does not hold `shape`'s planes.
pub(crate) fn unborder(shape: &BorderedShape, input: &[f32]) -> Vec<f32> {
    let (h, w, plane) = (shape.height, shape.width, shape.plane());
    let planes = shape.batch * shape.channels;
    assert_eq!(
        input.len(),
        planes * plane,
        "unborder: input of the wrong size"
    );
    let fill = |out: &mut [MaybeUninit<f32>]| {
        for_each_chunk(out, h * w, grain(h * w), |i, dst| {
            let src = &input[i * plane..(i + 1) * plane];
            for (y, line) in dst.chunks_exact_mut(w.max(1)).enumerate() {
                line.write_copy_of_slice(&src[shape.at(y, 0)..shape.at(y, w)]);
            }
        })
    };
    // SAFETY: the output splits into `planes` chunks of `h * w` values, each written whole as
    // its `h` rows of `w`.
    unsafe { written(planes * h * w, fill) }
}

/// The two layers of a [`separable`] convolution as the kernel reads them.
pub(crate) struct SeparableWeights<'a> {
    /// The depthwise kernel (`[C, 1, 3, 3]`, flattened), its bias (`[C]`, or empty) and
    /// activation; none for a 1x1 convolution alone.
    pub depthwise: Option<(&'a [f32], &'a [f32], &'a Epilogue)>,
    /// The pointwise kernel (`[O, C, 1, 1]`, flattened), its bias (`[O]`, or empty) and
    /// activation.
    pub pointwise: (&'a [f32], &'a [f32], &'a Epilogue),
    pub out_channels: usize,
}

/// Values of a [`separable`] tile's depthwise outputs and product together that a tile's rows
/// are chosen to fill (256 KB): measured at batch 1 against 16K values (more `gemm` calls, each
/// packing the kernel again: BlazeFace short range 1.28 -> 1.10 ms), 128K and whole images
/// (the outputs no longer in cache for the product: 1.07-1.10 ms and full range 4.4 -> 4.9).
const SEPARABLE_TILE: usize = 64 << 10;

/// Values of a bordered plane (4 KB, a page) up to which a widening [`separable`] layer of one
/// image splits over the threads by output channels rather than rows. Split by rows, each
/// output plane has two places where one thread's part ends next to the other's (a pure
/// write test put each at about 50–75 ns a pass, page boundaries or not), and the threads
/// slowed each other down (measured at two threads, with the product's output
/// per thread computed into a private buffer as the control: 32→128 on 24x24 with a residual
/// took 55 µs split by rows, 38 by channels, 36–44 into the private buffer; BlazeFace full range's
/// three such layers 52–66 → 33–51 µs). A narrowing layer pays more for computing every
/// depthwise output on both threads than it gains (192→64 on 12x12: 45 → 76 µs).
const SMALL_PLANE: usize = 1024;

/// A 3x3 depthwise convolution (stride 1, one zero on every side), when `weights` has one,
/// then a 1x1 convolution of `input` (`shape`, bordered), with the residual (bordered, its
/// `channels` at most the outputs): `[N, O, H, W]`, bordered. A span of a few rows' values of
/// all channels at a time (a tile): their depthwise outputs, then one product of the
/// pointwise kernel with them (or with the input's values), then the bias, residual and
/// activation as the tile's values are written. The tiles run in parallel. Panics when a
/// slice does not hold its shape's values.
pub(crate) fn separable(
    shape: &BorderedShape,
    input: &[f32],
    weights: &SeparableWeights,
    residual: Option<Residual>,
) -> Vec<f32> {
    let (c, o, h) = (shape.channels, weights.out_channels, shape.height);
    let (plane, cols) = (shape.plane(), shape.cols());
    assert!(
        h > 0
            && shape.width > 0
            && input.len() == shape.batch * c * plane
            && weights.depthwise.is_none_or(|(k, _, _)| k.len() == c * 9)
            && weights.pointwise.0.len() == o * c
            && residual.is_none_or(|r| {
                r.channels <= o && r.values.len() == shape.batch * r.channels * plane
            }),
        "separable: a slice of the wrong size"
    );
    let row = (c + o) * cols;
    let rows = (SEPARABLE_TILE / row.max(1)).clamp(1, h);
    // A single image splits over the threads. When it fits one tile and the layer widens or
    // its weights outnumber its positions (or it has no depthwise convolution), by output
    // channels: each task computes all of the depthwise outputs (cheap beside the product
    // then) and writes whole output planes, so that no two threads write into one plane and
    // each takes only its share of the weights. Otherwise into a multiple of the threads'
    // count of tiles, so that they share it evenly. A widening layer on small planes splits
    // by output channels even when it takes several tiles (see `SMALL_PLANE`).
    let split = match shape.batch {
        1 => tasks_for(h, grain(row)),
        _ => 1,
    };
    let by_channels = (1, split.min(o).max(1));
    let (tiles, groups) = match h.div_ceil(rows) {
        _ if split > 1 && o >= c && plane <= SMALL_PLANE => by_channels,
        1 if o >= c || o >= h * cols || weights.depthwise.is_none() => by_channels,
        tiles => (tiles.next_multiple_of(split).min(h), 1),
    };
    let rows = h.div_ceil(tiles);
    // Each tile takes a span of the planes' values from `at(0, 0)`, a multiple of
    // `SPAN_ALIGN` long but for the last (one tile: all of them).
    let total = h * cols;
    let span = total
        .div_ceil(tiles)
        .next_multiple_of(SPAN_ALIGN)
        .min(total);
    let tiles = total.div_ceil(span);
    let per_group = o.div_ceil(groups);
    let all = shape.batch * tiles * groups;
    let per_task = all.div_ceil(tasks_for(all, grain(rows * row / groups)));
    let fill = |out: &mut [MaybeUninit<f32>]| {
        let (len, out) = (out.len(), SharedPtr(out.as_mut_ptr().cast::<f32>()));
        run_tasks(all.div_ceil(per_task), &|t| {
            for item in t * per_task..((t + 1) * per_task).min(all) {
                let (tile, group) = (item / groups, item % groups);
                let (image, first) = (tile / tiles, tile % tiles * span);
                let channel = group * per_group;
                if first >= total || channel >= o {
                    continue;
                }
                let task = SeparableTile {
                    shape,
                    input,
                    weights,
                    residual,
                    image,
                    span: first..(first + span).min(total),
                    outputs: channel..(channel + per_group).min(o),
                };
                let depthwise = weights.depthwise.map_or(0, |_| c * task.span.len());
                with_scratch(depthwise, |scratch| {
                    Vectorized::Separable(&task, scratch, (out, len)).run()
                });
            }
        });
    };
    // SAFETY: every group of every tile of every image runs once, and `SeparableTile::run`
    // writes all of its span's values in each of its group's output planes of the image (see
    // there); the tiles' spans cover the planes, the groups' channels the outputs.
    unsafe { written(shape.batch * o * plane, fill) }
}

/// The values `span` (counted from `at(0, 0)`, at most `H x cols`) of image `image`'s planes
/// of a [`separable`] convolution, in output channels `outputs`.
struct SeparableTile<'a> {
    shape: &'a BorderedShape,
    input: &'a [f32],
    weights: &'a SeparableWeights<'a>,
    residual: Option<Residual<'a>>,
    image: usize,
    span: std::ops::Range<usize>,
    outputs: std::ops::Range<usize>,
}

impl SeparableTile<'_> {
    /// Computes the tile's depthwise outputs, if any, in `scratch` (`C x span` values) and its
    /// product straight into `out` (the whole output, `len` values): in each of the image's
    /// output planes of channels `outputs`, the values from `at(0, 0) + span.start` to
    /// `at(0, 0) + span.end`, and also those before `at(0, 0)` for the first span and from
    /// `at(H, 0)` for the last.
    #[inline(always)]
    fn run(&self, scratch: &mut [f32], (out, len): (SharedPtr, usize)) {
        let (shape, w) = (self.shape, self.weights);
        let (c, o) = (shape.channels, w.out_channels);
        let (plane, cols, width) = (shape.plane(), shape.cols(), shape.width);
        let count = self.span.len();
        let (first, last) = (self.span.start == 0, self.span.end == shape.height * cols);
        let (start, bottom) = (shape.at(0, 0) + self.span.start, shape.at(shape.height, 0));
        let image_input = &self.input[self.image * c * plane..][..c * plane];
        // The product's right matrix: the depthwise outputs, or the input's values of the
        // tile (channel `ch`'s at `ch * plane + start`).
        let (rhs, rhs_rs): (&[f32], usize) = match w.depthwise {
            Some((kernel, bias, epilogue)) => {
                let offset = self.span.start;
                let depthwise = &mut scratch[..c * count];
                let taps = self.shape.taps();
                for (ch, dst) in depthwise.chunks_exact_mut(count).enumerate() {
                    // Output (y, x) of the plane sums the taps at bordered (y + ky, x + kx):
                    // index y * cols + x + taps[3 * ky + kx]. Computed for every column of the
                    // pitch, the last two of each row being dropped below; the highest read,
                    // (H - 1) * cols + W + 1 + 2 * cols + 2 < (H + 3) * cols, stays inside the
                    // plane.
                    let src = &image_input[ch * plane..][..plane][offset..];
                    depthwise_outputs::<3>(src, (&taps, &kernel[ch * 9..ch * 9 + 9]), dst);
                    finish_sum(epilogue, ch, dst, bias.get(ch).copied().unwrap_or(0.), None);
                }
                (depthwise, count)
            }
            // Channel `C - 1`'s rows end at (C - 1) * plane + start + count <= C * plane (and
            // without channels there is nothing to read).
            None => (image_input.get(start..).unwrap_or_default(), plane),
        };
        let (kernel, bias, epilogue) = w.pointwise;
        let image = self.image * o * plane;
        let outputs = self.outputs.clone();
        assert!(
            image + o * plane <= len && outputs.end <= o,
            "separable: output too short"
        );
        // SAFETY: the product writes `image + oc * plane + start + j` for `oc` in `outputs`
        // (below `o`), `j < count`: the tile's span of the image's planes `outputs` (`start +
        // count <= bottom < plane`), inside the output (asserted), which the caller borrows
        // mutably for the whole run, and disjoint from every other task's values (other spans,
        // other channels, or another image's planes), so no two tasks touch the same value.
        // `one_product` checks that `rhs` holds its `c` rows of `count` values (row stride
        // `rhs_rs`) and the kernel's rows `outputs` their `outputs.len() * c` values.
        unsafe {
            one_product(
                out.at(image + outputs.start * plane + start),
                plane,
                &kernel[outputs.start * c..outputs.end * c],
                rhs,
                (outputs.len(), count, c),
                rhs_rs,
            )
        };
        for oc in outputs {
            let dst = image + oc * plane;
            // SAFETY: the tile's `count` values of plane `oc`, which the product just wrote
            // (initialised), and which only this task accesses (see above).
            let row = unsafe { std::slice::from_raw_parts_mut(out.at(dst + start), count) };
            let residual = self.residual.filter(|r| oc < r.channels).map(|r| {
                let plane = &r.values[(self.image * r.channels + oc) * plane..][..plane];
                (&plane[start..start + count], r.after_activation)
            });
            finish_sum(
                epilogue,
                oc,
                row,
                bias.get(oc).copied().unwrap_or(0.),
                residual,
            );
            // Columns `width` and `width + 1` of the pitch (its last two) land on the border.
            zero_border_columns(row, self.span.start, (width, cols));
            // SAFETY: the first span's tile also writes `dst..dst + at(0, 0)`, the last span's
            // `dst + bottom..dst + plane`: the plane's border outside every tile's span,
            // inside the output and touched by no other task.
            unsafe {
                if first {
                    std::ptr::write_bytes(out.at(dst), 0, shape.at(0, 0));
                }
                if last {
                    std::ptr::write_bytes(out.at(dst + bottom), 0, plane - bottom);
                }
            }
        }
    }
}

/// The multiple of values that a [`separable`] tile's span is (but for the last), so that
/// the product's and the depthwise kernel's vectors run whole: `gemm` with 32 x 64 weights
/// took 12.4 µs for 312 columns (12 rows of 26), 11.4 for 320 and 10.8 for 304.
const SPAN_ALIGN: usize = 16;

/// Zeroes the values of `row` (a plane's values from `at(0, 0) + from`) that lie in columns
/// `width` and `width + 1` of the pitch `cols` (the borders between rows).
fn zero_border_columns(row: &mut [f32], from: usize, (width, cols): (usize, usize)) {
    let mut line = from / cols * cols;
    while line < from + row.len() {
        for column in [line + width, line + width + 1] {
            if let Some(value) = column.checked_sub(from).and_then(|j| row.get_mut(j)) {
                *value = 0.;
            }
        }
        line += cols;
    }
}

/// The largest depthwise kernel the depthwise kernel runs (larger ones take the grouped `gemm`
/// path of [`conv2d`]).
pub(crate) const MAX_DEPTHWISE_KERNEL: usize = 7;

impl Plane<'_> {
    /// Computes `dst` (`OH x OW`) from `src` (`H x W`), a depthwise convolution in `scratch`
    /// (its layout's [`PhaseLayout::scratch`] values).
    #[inline(always)]
    fn run(&self, src: &[f32], dst: &mut [MaybeUninit<f32>], scratch: &mut [f32]) {
        match &self.op {
            PlaneOp::Convolve {
                layout,
                ker,
                finish,
            } => {
                let (g, finish) = (self.g, *finish);
                let planes = (src, *ker);
                let out = (dst, scratch);
                match g.kernel {
                    1 => depthwise_plane::<1>(g, layout, planes, out, finish),
                    2 => depthwise_plane::<2>(g, layout, planes, out, finish),
                    3 => depthwise_plane::<3>(g, layout, planes, out, finish),
                    4 => depthwise_plane::<4>(g, layout, planes, out, finish),
                    5 => depthwise_plane::<5>(g, layout, planes, out, finish),
                    6 => depthwise_plane::<6>(g, layout, planes, out, finish),
                    7 => depthwise_plane::<7>(g, layout, planes, out, finish),
                    // `depthwise` takes no larger kernel; should one come, its plane is still
                    // written.
                    _ => out.0.fill(MaybeUninit::new(f32::NAN)),
                }
            }
            PlaneOp::Max => self.pool(src, (dst, scratch), true),
            PlaneOp::Mean => self.pool(src, (dst, scratch), false),
        }
    }

    /// Max (`max`) or mean pooling of `src` into `dst`, every row of it, each row computed in
    /// `scratch` (`OW` values).
    #[inline(always)]
    fn pool(&self, src: &[f32], (dst, scratch): (&mut [MaybeUninit<f32>], &mut [f32]), max: bool) {
        let g = self.g;
        let (k, s, ow) = (g.kernel, g.stride, g.out_width);
        let row = &mut scratch[..ow];
        let unpadded = g.top == 0 && g.left == 0;
        if k == 2 && s == 2 && unpadded && 2 * ow <= g.width && 2 * g.out_height <= g.height {
            // The common 2x2, stride-2 pooling of whole windows: each output reads two pairs.
            for (oy, out) in dst.chunks_exact_mut(ow).enumerate() {
                let top = &src[2 * oy * g.width..][..2 * ow];
                let bottom = &src[(2 * oy + 1) * g.width..][..2 * ow];
                pool_pairs((top, bottom), row, max);
                out.write_copy_of_slice(row);
            }
            return;
        }
        for (oy, out) in dst.chunks_exact_mut(ow).enumerate() {
            row.fill(if max { f32::NEG_INFINITY } else { 0. });
            for ky in 0..k {
                let iy = oy * s + ky;
                if iy < g.top || iy >= g.top + g.height {
                    continue;
                }
                let line = &src[(iy - g.top) * g.width..(iy - g.top + 1) * g.width];
                for (kx, ox) in self.xs.iter().enumerate() {
                    if ox.is_empty() {
                        continue;
                    }
                    let x0 = ox.start * s + kx - g.left;
                    let values = line[x0..].iter().step_by(s);
                    let acc = row[ox.clone()].iter_mut();
                    if max {
                        acc.zip(values).for_each(|(a, v)| *a = a.max(*v));
                    } else {
                        acc.zip(values).for_each(|(a, v)| *a += v);
                    }
                }
            }
            if !max {
                let rows = (0..k)
                    .filter(|ky| (g.top..g.top + g.height).contains(&(oy * s + ky)))
                    .count();
                for (ox, v) in row.iter_mut().enumerate() {
                    let cols = self.xs.iter().filter(|r| r.contains(&ox)).count();
                    *v /= (rows * cols).max(1) as f32;
                }
            }
            out.write_copy_of_slice(row);
        }
    }
}

/// One output row of a 2x2, stride-2 pooling into `row`: each value from two pairs, of `top`
/// and `bottom` (at least `2 * row.len()` values each), their maximum (`max`) or mean, summed in
/// [`Plane::pool`]'s order (row by row, left to right, from -inf or 0).
#[inline(always)]
fn pool_pairs((top, bottom): (&[f32], &[f32]), row: &mut [f32], max: bool) {
    let pairs = top.chunks_exact(2).zip(bottom.chunks_exact(2));
    for (v, (a, b)) in row.iter_mut().zip(pairs) {
        *v = if max {
            f32::NEG_INFINITY.max(a[0]).max(a[1]).max(b[0]).max(b[1])
        } else {
            (0. + a[0] + a[1] + b[0] + b[1]) / 4.
        };
    }
}

/// A 2x2, stride-2 pooling (maximum, or mean when not `max`) of `input` (`shape`, bordered, an
/// even height and width) without padding: `[N, C, H / 2, W / 2]`, bordered when `bordered`,
/// else plain. Panics when `input` does not hold `shape`'s planes or a side is odd or zero.
pub(crate) fn pool_bordered(
    shape: &BorderedShape,
    input: &[f32],
    max: bool,
    bordered: bool,
) -> Vec<f32> {
    let (h, w, plane) = (shape.height, shape.width, shape.plane());
    let planes = shape.batch * shape.channels;
    assert!(
        h > 0 && w > 0 && h % 2 == 0 && w % 2 == 0 && input.len() == planes * plane,
        "pool_bordered: input of the wrong size"
    );
    let rows = PlaneRows::new((h / 2, w / 2), bordered);
    let pooling = HalvingPool { shape, rows, max };
    let fill = |dst: &mut [MaybeUninit<f32>]| {
        for_each_chunk(dst, rows.len, grain(plane), |i, dst| {
            let src = &input[i * plane..(i + 1) * plane];
            with_scratch(rows.width, |row| {
                Vectorized::Pool(&pooling, src, dst, row).run()
            })
        })
    };
    // SAFETY: the output splits into `planes` chunks of `rows.len` values, one per input
    // plane, and `HalvingPool::run` writes each whole (see there).
    unsafe { written(planes * rows.len, fill) }
}

/// One output plane of [`pool_bordered`]: the bordered input's shape, where the output rows
/// go, and which pooling.
struct HalvingPool<'a> {
    shape: &'a BorderedShape,
    rows: PlaneRows,
    max: bool,
}

impl HalvingPool<'_> {
    /// Pools the bordered plane `src` into `dst`, all of it: `0..start`, then for each row `oy`
    /// the run `start + oy * pitch..start + (oy + 1) * pitch` (the pooled values, then the
    /// border when bordered: the plain pitch is the row), then the rest from `start + count *
    /// pitch` (see [`PlaneRows`]); `row` holds `W / 2` values.
    #[inline(always)]
    fn run(&self, src: &[f32], dst: &mut [MaybeUninit<f32>], row: &mut [f32]) {
        let (shape, rows) = (self.shape, self.rows);
        let w = shape.width;
        rows.clear_ends(dst);
        for oy in 0..rows.count {
            let top = &src[shape.at(2 * oy, 0)..shape.at(2 * oy, w)];
            let bottom = &src[shape.at(2 * oy + 1, 0)..shape.at(2 * oy + 1, w)];
            pool_pairs((top, bottom), row, self.max);
            rows.row(dst, oy).write_copy_of_slice(row);
        }
    }
}

/// A 3x3 depthwise convolution with stride 2 and TensorFlow's `SAME` padding of even planes (no
/// zero above or left, one below and right) of `input` (`shape`, bordered, an even height and
/// width), by `kernel` (`[C, 1, 3, 3]`, flattened), its `bias` (`[C]`, or empty) and activation:
/// `[N, C, H / 2, W / 2]`, bordered when `bordered`, else plain. Output `(oy, ox)` is output
/// `(2 oy + 1, 2 ox + 1)` of the stride-1 convolution, which reads the border as that
/// padding, so each output row is that row of the stride-1 convolution computed straight from
/// the bordered plane (no padded copy, no split by phase), every other value of it kept; on
/// narrow planes a few such rows are computed as one run, with the even rows between them.
/// The planes run in parallel. Panics when a slice does not hold its shape's values or a side
/// is odd or zero.
pub(crate) fn depthwise_halving(
    shape: &BorderedShape,
    input: &[f32],
    (kernel, bias, epilogue): (&[f32], &[f32], &Epilogue),
    bordered: bool,
) -> Vec<f32> {
    let (c, h, w, plane) = (shape.channels, shape.height, shape.width, shape.plane());
    let planes = shape.batch * c;
    assert!(
        h > 0
            && w > 0
            && h % 2 == 0
            && w % 2 == 0
            && input.len() == planes * plane
            && kernel.len() == c * 9,
        "depthwise_halving: a slice of the wrong size"
    );
    let (oh, ow) = (h / 2, w / 2);
    let rows = PlaneRows::new((oh, ow), bordered);
    let fill = |out: &mut [MaybeUninit<f32>]| {
        for_each_chunk(out, rows.len, grain(9 * w * oh), |i, dst| {
            let channel = i % c;
            let task = HalvingPlane {
                shape,
                src: &input[i * plane..(i + 1) * plane],
                kernel: &kernel[channel * 9..channel * 9 + 9],
                finish: (epilogue, channel, bias.get(channel).copied().unwrap_or(0.)),
            };
            rows.clear_ends(dst);
            let dst = (dst, rows);
            #[cfg(target_arch = "x86_64")]
            if let Some(simd) = pulp::x86::V4::try_new() {
                let len = ow.next_multiple_of(V4_LANES);
                return with_scratch(len, |row| simd.vectorize(|| task.run_v4(simd, dst, row)));
            }
            with_scratch(HalvingPlane::scratch(shape), |scratch| {
                Vectorized::Halving(&task, dst, scratch).run()
            })
        })
    };
    // SAFETY: the output splits into `planes` chunks of `rows.len` values, one per input
    // plane, whose values before the first row and after the last are zeroed above, and
    // `HalvingPlane::run` writes every row of its chunk, each with the rest of its pitch.
    unsafe { written(planes * rows.len, fill) }
}

/// One plane of [`depthwise_halving`]: its bordered input, 3x3 kernel, and the epilogue,
/// channel and bias that complete its rows.
struct HalvingPlane<'a> {
    shape: &'a BorderedShape,
    src: &'a [f32],
    kernel: &'a [f32],
    finish: (&'a Epilogue, usize, f32),
}

/// Stride-1 outputs that [`HalvingPlane::run`] computes together at least (when a plane is
/// that wide), so that narrow planes still fill whole blocks of [`DEPTHWISE_BLOCK`].
const HALVING_RUN: usize = 256;

impl HalvingPlane<'_> {
    /// The odd rows of the stride-1 outputs that [`HalvingPlane::run`] computes in one run,
    /// with the even rows between them.
    fn rows_per_run(shape: &BorderedShape) -> usize {
        (HALVING_RUN / (2 * shape.cols())).clamp(1, shape.height / 2)
    }

    /// Values of the scratch buffer [`HalvingPlane::run`] takes: one run's outputs.
    fn scratch(shape: &BorderedShape) -> usize {
        (2 * Self::rows_per_run(shape) - 1) * shape.cols()
    }

    /// Writes every row of `dst` (an `H / 2 x W / 2` plane of `rows`, see [`PlaneRows::row`]),
    /// `scratch` holding [`scratch`](Self::scratch) values.
    #[inline(always)]
    fn run(&self, (dst, rows): (&mut [MaybeUninit<f32>], PlaneRows), scratch: &mut [f32]) {
        let (cols, w) = (self.shape.cols(), self.shape.width);
        let (epilogue, channel, bias) = self.finish;
        let taps = self.shape.taps();
        let per_run = Self::rows_per_run(self.shape);
        for oy in (0..rows.count).step_by(per_run) {
            // Stride-1 output (y, x) sums bordered (y + ky, x + kx), input (y + ky - 1, x + kx
            // - 1): for y = 2 oy + 1 and x = 2 ox + 1, input (2 oy + ky, 2 ox + kx). A run
            // computes rows 2 oy + 1 to 2 oy' + 1 of its output rows oy..=oy', the first W
            // of the last; its highest read, (H + 1) * cols + W + 1 for the plane's last row,
            // is inside the plane.
            let count = per_run.min(rows.count - oy);
            let len = (2 * count - 2) * cols + w;
            let src = &self.src[(2 * oy + 1) * cols..];
            let run = &mut scratch[..len];
            depthwise_outputs::<3>(src, (&taps, self.kernel), run);
            // Completed whole (the dropped values too), in vectors, then every other value
            // kept: completing the kept values after a copy by single values stalled on
            // reading them back.
            finish_sum(epilogue, channel, run, bias, None);
            for r in 0..count {
                let pairs = run[2 * r * cols..][..w].chunks_exact(2);
                for (v, pair) in rows.row(dst, oy + r).iter_mut().zip(pairs) {
                    v.write(pair[1]);
                }
            }
        }
    }
}

/// Lanes of an AVX-512 vector of `f32`.
#[cfg(target_arch = "x86_64")]
const V4_LANES: usize = 16;

/// Input values one block of [`HalvingPlane::run_v4`]'s outputs reads from each input row.
#[cfg(target_arch = "x86_64")]
const V4_HALVING_READ: usize = 2 * V4_LANES + 2;

#[cfg(target_arch = "x86_64")]
impl HalvingPlane<'_> {
    /// [`run`](Self::run) on AVX-512 (the sums in the same order, so the same values): each
    /// output row summed straight from the three input rows it reads, 16 outputs at a time,
    /// each tap's every other input value gathered from two vectors of the row by one
    /// permutation (no stride-1 outputs to drop); `row` holds `W / 2` values rounded up to a
    /// whole vector.
    #[inline(always)]
    fn run_v4(
        &self,
        simd: pulp::x86::V4,
        (dst, rows): (&mut [MaybeUninit<f32>], PlaneRows),
        row: &mut [f32],
    ) {
        let avx = simd.avx512f;
        let (shape, ow) = (self.shape, self.shape.width / 2);
        let (epilogue, channel, bias) = self.finish;
        let weights = std::array::from_fn(|t| avx._mm512_set1_ps(self.kernel[t]));
        let (full, tail) = (ow / V4_LANES, ow % V4_LANES);
        let (row, _) = row[..ow.next_multiple_of(V4_LANES)].as_chunks_mut::<V4_LANES>();
        // A partial last block reads its rows' values in place when the last input row's
        // read stays inside the plane (the lanes past the row's outputs reading values of the
        // next rows, and dropped), else from zero-padded copies (as many values in every row,
        // so the zeros after them stay).
        let last = 2 * full * V4_LANES;
        let in_place = shape.at(shape.height, last) + V4_HALVING_READ <= shape.plane();
        let mut padded = [[0f32; V4_HALVING_READ]; 3];
        for oy in 0..rows.count {
            // Output (oy, ox) reads input (2 oy + ky, 2 ox + kx), input row H and column W
            // being the bordered plane's zeros: a block's outputs from `ox` on read the
            // columns from 2 ox to 2 ox + 33 of each of its three input rows, a full block's
            // up to W + 1 (the next row's left border), inside the plane even for input row H.
            let lines: [usize; 3] = std::array::from_fn(|ky| shape.at(2 * oy + ky, 0));
            for (block, sums) in row[..full].iter_mut().enumerate() {
                let first = 2 * block * V4_LANES;
                let rows = lines.map(|at| &self.src[at + first..at + first + V4_HALVING_READ]);
                *sums = pulp::cast(halving_block(simd, rows, &weights));
            }
            if tail > 0 {
                let rows = match in_place {
                    true => lines.map(|at| &self.src[at + last..at + last + V4_HALVING_READ]),
                    false => {
                        for (copy, &at) in padded.iter_mut().zip(&lines) {
                            let len = 2 * tail + 2;
                            copy[..len].copy_from_slice(&self.src[at + last..at + last + len]);
                        }
                        [&padded[0][..], &padded[1][..], &padded[2][..]]
                    }
                };
                row[full] = pulp::cast(halving_block(simd, rows, &weights));
            }
            let row = &mut row.as_flattened_mut()[..ow];
            finish_sum(epilogue, channel, row, bias, None);
            rows.row(dst, oy).write_copy_of_slice(row);
        }
    }
}

/// The sums of 16 outputs of a stride-2 3x3 depthwise convolution on AVX-512: `rows[ky]` holds
/// the [`V4_HALVING_READ`] input values from column `2 ox` of the outputs' input row `ky`, so
/// that output `ox + i` sums tap `(ky, kx)` from value `2 i + kx`, taps in row-major order from
/// zero, each a fused multiply-add by its broadcast weight in `weights`.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
fn halving_block(
    simd: pulp::x86::V4,
    rows: [&[f32]; 3],
    weights: &[std::arch::x86_64::__m512; 9],
) -> std::arch::x86_64::__m512 {
    use std::arch::x86_64::{__m512, __m512i};
    let avx = simd.avx512f;
    let even: __m512i = pulp::cast(std::array::from_fn::<i32, V4_LANES, _>(|i| 2 * i as i32));
    let odd: __m512i = pulp::cast(std::array::from_fn::<i32, V4_LANES, _>(|i| {
        2 * i as i32 + 1
    }));
    let mut acc = avx._mm512_setzero_ps();
    for (line, weights) in rows.iter().zip(weights.chunks_exact(3)) {
        let load = |at: usize| -> __m512 {
            let mut v = [0f32; V4_LANES];
            v.copy_from_slice(&line[at..at + V4_LANES]);
            pulp::cast(v)
        };
        let (a, b) = (load(0), load(V4_LANES));
        let (c, d) = (load(2), load(V4_LANES + 2));
        let taps = [
            avx._mm512_permutex2var_ps(a, even, b),
            avx._mm512_permutex2var_ps(a, odd, b),
            avx._mm512_permutex2var_ps(c, even, d),
        ];
        for (x, w) in taps.into_iter().zip(weights) {
            acc = avx._mm512_fmadd_ps(x, *w, acc);
        }
    }
    acc
}

/// Work that runs compiled for the widest instruction set the CPU has: `pulp` detects it at
/// run time and calls [`pulp::WithSimd::with_simd`] inside a function built for AVX2 or AVX-512,
/// into which the whole task is inlined, so its loops vectorise beyond the baseline SSE2.
enum Vectorized<'a> {
    /// A depthwise convolution or pooling plane: `(plane, src, dst, scratch)`, `scratch`
    /// holding the depthwise layout's [`PhaseLayout::scratch`] values.
    Plane(
        &'a Plane<'a>,
        &'a [f32],
        &'a mut [MaybeUninit<f32>],
        &'a mut [f32],
    ),
    /// One plane of a 2x2 pooling of bordered planes: `(layout, src, dst, row)` (see
    /// [`HalvingPool::run`]).
    Pool(
        &'a HalvingPool<'a>,
        &'a [f32],
        &'a mut [MaybeUninit<f32>],
        &'a mut [f32],
    ),
    /// One plane of a stride-2 depthwise convolution of bordered planes: `(plane, (dst, its
    /// rows), scratch)` (see [`HalvingPlane::run`]), `scratch` holding
    /// [`HalvingPlane::scratch`] values.
    Halving(
        &'a HalvingPlane<'a>,
        (&'a mut [MaybeUninit<f32>], PlaneRows),
        &'a mut [f32],
    ),
    /// One plane of a bilinear resize: `((src, its rows), (row taps, column taps, whether the
    /// columns double), rows, (dst, its rows))`.
    Resize(
        (&'a [f32], PlaneRows),
        (&'a [Tap], &'a [Tap], bool),
        &'a mut [f32],
        (&'a mut [MaybeUninit<f32>], PlaneRows),
    ),
    /// The im2col rows of one input plane: `(geometry, plane, rows)`.
    Im2col(&'a Geometry, &'a [f32], &'a mut [f32]),
    /// A phase plane of a plane (`H x W`) zero-padded in a direct convolution's layout:
    /// `(geometry, layout, plane, (phase, its values))` (see [`PhaseLayout::phases`]).
    Pad(
        &'a Geometry,
        &'a PhaseLayout,
        &'a [f32],
        (usize, &'a mut [f32]),
    ),
    /// One group of output channels of a direct convolution: `(group, dst, flat)` (see
    /// [`DirectGroup::run`]).
    Direct(
        &'a DirectGroup<'a>,
        &'a mut [MaybeUninit<f32>],
        &'a mut [f32],
    ),
    /// A single row's product added to `dst`: `(dst, lhs, rhs, rhs_rs)` (see
    /// [`row_product`]).
    RowProduct(&'a mut [f32], &'a [f32], &'a [f32], usize),
    /// One panel's sums of a dense layer on widened f16 weights: `(weights, x, sums)` (see
    /// [`panel_sums`]).
    PanelSums(&'a [f32], &'a [f32], &'a mut [f32; PANEL]),
    /// One part of a direct convolution on bordered planes: `(part, (output, its length))`
    /// (see [`BorderedDirect::run`]).
    DirectBordered(&'a BorderedDirect<'a>, (SharedPtr, usize)),
    /// One part of a Winograd convolution on bordered planes: `(part, scratch, (output, its
    /// length))` (see [`winograd::WinogradPart::run`]).
    Winograd(
        &'a winograd::WinogradPart<'a>,
        &'a mut [f32],
        (SharedPtr, usize),
    ),
    /// One tile of a separable convolution: `(tile, scratch, (output, its length))` (see
    /// [`SeparableTile::run`]).
    Separable(&'a SeparableTile<'a>, &'a mut [f32], (SharedPtr, usize)),
    /// An activation on one row of channel `channel`.
    Activation(&'a Epilogue, usize, &'a mut [f32]),
    /// Panels of a block-quantised dense layer: `(weight, input, first panel, out_p)`
    /// (see [`quantized_panels`]).
    Quantized(
        &'a QuantizedWeight,
        &'a QuantizedRows<'a>,
        usize,
        &'a mut [f32],
    ),
    /// One row of a layer norm: `(row, scale, offset, eps)`.
    LayerNorm(&'a mut [f32], &'a [f32], &'a [f32], f32),
    /// One output row of channel `channel` completed: the bias (and the residual row if it
    /// comes before the activation) added, the activation, then the residual row if it comes
    /// after.
    Finish(
        &'a Epilogue,
        usize,
        &'a mut [f32],
        f32,
        Option<(&'a [f32], bool)>,
    ),
}

impl Vectorized<'_> {
    #[inline(always)]
    fn run(self) {
        pulp::Arch::new().dispatch(self)
    }
}

impl pulp::WithSimd for Vectorized<'_> {
    type Output = ();

    #[inline(always)]
    fn with_simd<S: pulp::Simd>(self, simd: S) {
        match self {
            Self::Plane(plane, src, dst, scratch) => plane.run(src, dst, scratch),
            Self::Im2col(g, plane, rows) => im2col_plane(g, plane, rows),
            Self::Pad(g, layout, src, (phase, plane)) => layout.fill_phase(g, src, phase, plane),
            Self::Direct(group, dst, flat) => group.run(simd, dst, flat),
            Self::DirectBordered(part, out) => part.run(simd, out),
            Self::Winograd(part, scratch, out) => part.run(simd, scratch, out),
            Self::RowProduct(dst, lhs, rhs, rhs_rs) => row_product(simd, dst, lhs, rhs, rhs_rs),
            Self::PanelSums(weights, x, sums) => panel_sums(weights, x, sums),
            Self::Halving(plane, dst, scratch) => plane.run(dst, scratch),
            Self::Pool(pooling, src, dst, row) => pooling.run(src, dst, row),
            Self::Resize(src, taps, rows, dst) => resize_plane(src, taps, rows, dst),
            Self::Separable(tile, scratch, out) => tile.run(scratch, out),
            Self::Activation(epilogue, channel, row) => epilogue.apply(channel, row),
            Self::Quantized(weight, input, first, out_p) => {
                quantized_panels(weight, input, first, out_p)
            }
            Self::LayerNorm(row, scale, offset, eps) => layer_norm_row(row, scale, offset, eps),
            Self::Finish(epilogue, channel, row, bias, residual) => {
                finish_sum(epilogue, channel, row, bias, residual)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The bounds-checked twin of `matmul` with `accumulate`.
    fn naive(
        dst: &mut [f32],
        lhs: &[f32],
        rhs: &[f32],
        (m, n, k): (usize, usize, usize),
        rs: usize,
    ) {
        for i in 0..m {
            for j in 0..n {
                let mut acc = dst[i * n + j];
                for l in 0..k {
                    acc += lhs[i * k + l] * rhs[l * rs + j];
                }
                dst[i * n + j] = acc;
            }
        }
    }

    /// The AVX-512 and AVX2 products of an f16 panel give the widened kernel's sums up to
    /// their order (which the layer tests compare with candle's product), each where the CPU
    /// has it: inputs in whole steps of [`HALF_UNROLL`], with a remainder, and fewer than one
    /// step.
    #[cfg(target_arch = "x86_64")]
    #[test]
    fn f16_panels_on_avx512_and_avx2_match_the_widened_kernel() {
        for inputs in [0, 1, 7, 8, 9, 100, 512] {
            let weights = values(inputs * PANEL, 5);
            let panel: Vec<u16> = weights
                .iter()
                .map(|&w| half::f16::from_f32(w).to_bits())
                .collect();
            let x = values(inputs, 9);
            let widened = half_sums_widened(&panel, &x);
            let v4 = pulp::x86::V4::try_new()
                .map(|simd| simd.vectorize(|| half_sums_v4(simd, &panel, &x)));
            // SAFETY: `has_f16c` checks the features `half_sums_v3` is compiled for.
            let v3 = has_f16c().then(|| unsafe { half_sums_v3(&panel, &x) });
            for sums in v4.into_iter().chain(v3) {
                for (a, b) in sums.iter().zip(&widened) {
                    assert!(
                        (a - b).abs() <= 1e-5 * (1. + b.abs()),
                        "{inputs} inputs: {a} vs {b}"
                    );
                }
            }
        }
    }

    /// The AVX-512 stride-2 depthwise plane gives the portable kernel's values bit for bit
    /// (which the layer tests compare with the plain convolution): whole blocks, partial ones
    /// read in place and from padded copies, planes of one and of several blocks.
    #[cfg(target_arch = "x86_64")]
    #[test]
    fn halving_on_avx512_matches_the_portable_kernel() {
        let Some(simd) = pulp::x86::V4::try_new() else {
            return;
        };
        for (h, w) in [
            (2, 2),
            (12, 12),
            (6, 24),
            (4, 30),
            (8, 48),
            (10, 96),
            (4, 98),
        ] {
            let shape = BorderedShape {
                batch: 1,
                channels: 1,
                height: h,
                width: w,
            };
            let plane = border(&shape, &values(h * w, 7));
            let kernel = values(9, 3);
            let epilogue = Epilogue::Relu;
            let task = HalvingPlane {
                shape: &shape,
                src: &plane,
                kernel: &kernel,
                finish: (&epilogue, 0, 0.25),
            };
            let run = |v4: bool, bordered: bool| {
                let rows = PlaneRows::new((h / 2, w / 2), bordered);
                let fill = |dst: &mut [MaybeUninit<f32>]| {
                    rows.clear_ends(dst);
                    match v4 {
                        true => {
                            let mut row = vec![0.; (w / 2).next_multiple_of(V4_LANES)];
                            simd.vectorize(|| task.run_v4(simd, (dst, rows), &mut row))
                        }
                        false => {
                            let mut scratch = vec![0.; HalvingPlane::scratch(&shape)];
                            Vectorized::Halving(&task, (dst, rows), &mut scratch).run()
                        }
                    }
                };
                // SAFETY: both kernels write every row of the plane's `h / 2 x w / 2` outputs
                // with the rest of its pitch, and the values around the rows are zeroed.
                unsafe { written(rows.len, fill) }
            };
            let bits = |v: Vec<f32>| v.into_iter().map(f32::to_bits).collect::<Vec<_>>();
            for bordered in [false, true] {
                let name = format!("{h} x {w}, bordered {bordered}");
                assert_eq!(
                    bits(run(true, bordered)),
                    bits(run(false, bordered)),
                    "{name}"
                );
            }
        }
    }

    pub(super) fn values(len: usize, seed: u32) -> Vec<f32> {
        // A small LCG: deterministic and dependency-free.
        let mut state = seed.wrapping_mul(2_654_435_761).wrapping_add(1);
        (0..len)
            .map(|_| {
                state = state.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
                (state >> 8) as f32 / (1u32 << 24) as f32 - 0.5
            })
            .collect()
    }

    #[test]
    fn gemm_matches_its_bounds_checked_twin() {
        for (m, n, k, rs) in [
            (1, 1, 1, 1),
            (3, 5, 2, 5),
            (3, 5, 2, 7),
            (17, 33, 9, 33),
            (64, 100, 27, 100),
        ] {
            let lhs = values(m * k, 1);
            let rhs = values((k - 1) * rs + n, 2);
            let mut got = values(m * n, 3);
            let mut want = got.clone();
            matmul(Dst::Add(&mut got), &lhs, &rhs, (m, n, k), rs, true);
            naive(&mut want, &lhs, &rhs, (m, n, k), rs);
            // SAFETY: `matmul` writes all `m * n` values.
            let overwritten = unsafe {
                written(m * n, |dst| {
                    matmul(Dst::Write(dst), &lhs, &rhs, (m, n, k), rs, false)
                })
            };
            let mut fresh = vec![0f32; m * n];
            naive(&mut fresh, &lhs, &rhs, (m, n, k), rs);
            for (a, b) in overwritten.iter().zip(&fresh) {
                assert!(
                    (a - b).abs() <= 1e-5 * (1. + b.abs()),
                    "{m}x{n}x{k} overwritten: {a} vs {b}"
                );
            }
            for (a, b) in got.iter().zip(&want) {
                assert!(
                    (a - b).abs() <= 1e-5 * (1. + b.abs()),
                    "{m}x{n}x{k}: {a} vs {b}"
                );
            }
        }
    }

    #[test]
    fn doubled_rows_equal_the_general_taps_bit_for_bit() {
        for w in 1..40 {
            let xs = sample_positions(w, 2 * w);
            assert_eq!(doubles(&xs, w), w >= 2, "{w} columns");
            if w < 2 {
                continue;
            }
            let line = values(w, w as u32);
            let mut got = vec![f32::NAN; 2 * w];
            double_row(&line, &mut got);
            for (d, (g, &(x0, x1, t))) in got.iter().zip(&xs).enumerate() {
                let want = line[x0] * (1. - t) + line[x1] * t;
                assert_eq!(g.to_bits(), want.to_bits(), "{w} columns, output {d}");
            }
        }
        for (w, ow) in [(4, 7), (4, 9), (3, 9), (6, 6), (8, 4)] {
            assert!(!doubles(&sample_positions(w, ow), w), "{w} -> {ow}");
        }
    }

    #[test]
    fn direct_weights_are_packed_by_group_input_and_tap() {
        // 9 outputs, 2 inputs, 3x3: weight (o, c, t) = 100 o + 10 c + t.
        let weight: Vec<f32> = (0..9 * 2 * 9)
            .map(|i| (100 * (i / 18) + 10 * (i / 9 % 2) + i % 9) as f32)
            .collect();
        let packed = DirectWeight::new(&weight, (9, 2, 3)).unwrap();
        let (first, second) = (packed.group(0), packed.group(1));
        assert_eq!(first.len(), 2 * 9 * DIRECT_CHANNELS);
        // Input 1, tap 4 of the first group: outputs 0..8 side by side.
        let at = (9 + 4) * DIRECT_CHANNELS;
        let want: Vec<f32> = (0..8).map(|o| (100 * o + 14) as f32).collect();
        assert_eq!(&first[at..at + DIRECT_CHANNELS], want.as_slice());
        // The second group holds output 8, then zero weights.
        assert_eq!(second[at], 814.);
        assert!(second[at + 1..at + DIRECT_CHANNELS]
            .iter()
            .all(|&w| w == 0.));
        assert!(DirectWeight::new(&weight[1..], (9, 2, 3)).is_none());
        assert!(DirectWeight::new(&vec![0.; 2 * 81], (2, 1, 9)).is_none());
        assert!(DirectWeight::new(&[], (2, 0, 3)).is_none());
    }

    #[test]
    fn an_empty_product_writes_zeros() {
        // SAFETY: `matmul` writes all `m * n` values, zeros when `k` is 0.
        let out = unsafe {
            written(6, |dst| {
                matmul(Dst::Write(dst), &[], &[], (2, 3, 0), 3, true)
            })
        };
        assert_eq!(out, vec![0.; 6]);
    }

    /// Both packed weights give back their values through `dequantized` (the path off the
    /// CPU): the panels' layout undone, a padded last panel included, and the int8 weight's
    /// zero point and scale applied per block.
    #[test]
    fn packed_weights_dequantize_to_their_values() {
        let (outputs, inputs, block) = (19, 6, 3);
        let halves: Vec<half::f16> = values(outputs * inputs, 4)
            .iter()
            .map(|&v| half::f16::from_f32(v))
            .collect();
        let half = HalfWeight::new(&halves, (outputs, inputs)).unwrap();
        let want: Vec<f32> = halves.iter().map(|h| h.to_f32()).collect();
        assert_eq!(half.dequantized(), want);
        let q: Vec<i8> = (0..outputs * inputs).map(|i| (i % 23) as i8 - 11).collect();
        let blocks = inputs / block;
        let scales: Vec<f32> = (0..outputs * blocks).map(|b| 0.5 + b as f32).collect();
        let zeros: Vec<i8> = (0..outputs * blocks).map(|b| (b % 5) as i8 - 2).collect();
        let int8 = QuantizedWeight::new(&q, (outputs, inputs), &scales, &zeros, block).unwrap();
        let want: Vec<f32> = (0..outputs * inputs)
            .map(|i| {
                let b = i / inputs * blocks + i % inputs / block;
                (q[i] as f32 - zeros[b] as f32) * scales[b]
            })
            .collect();
        assert_eq!(int8.dequantized(), want);
    }

    /// `gemm_raw` writes an empty sum's zeros itself (`gemm` writes nothing when `k` is 0),
    /// at its strides and nowhere else; accumulating, it leaves the values as they were.
    #[test]
    fn an_empty_sum_in_gemm_raw_writes_zeros() {
        for accumulate in [false, true] {
            let mut dst = vec![7f32; 12];
            // SAFETY: `dst` holds 2 rows (stride 6) of 3 values (stride 2).
            unsafe {
                gemm_raw(
                    dst.as_mut_ptr(),
                    (6, 2, accumulate),
                    &[],
                    &[],
                    (2, 3, 0),
                    3,
                    gemm::Parallelism::None,
                )
            };
            // Rows 0 and 1 (stride 6), columns 0 to 2 (stride 2): the even indices.
            for (i, &v) in dst.iter().enumerate() {
                let zeroed = !accumulate && i.is_multiple_of(2);
                assert_eq!(v, if zeroed { 0. } else { 7. }, "value {i}");
            }
        }
    }

    #[test]
    #[should_panic(expected = "right matrix too short")]
    fn gemm_rejects_a_short_matrix() {
        let mut dst = vec![0f32; 4];
        matmul(Dst::Add(&mut dst), &[1.; 4], &[1.; 3], (2, 2, 2), 2, true);
    }

    #[test]
    fn valid_ranges_skip_the_padding() {
        let g = Geometry::new((1, 1, 5, 5), 3, 2, (1, 1, 1, 1)).unwrap();
        assert_eq!((g.out_height, g.out_width), (3, 3));
        // kx = 0 reads input x = 2 * ox - 1: valid for ox = 1, 2.
        assert_eq!(g.valid(3, 0, 1, 5), 1..3);
        // kx = 2 reads 2 * ox + 1: valid for ox = 0, 1 (x = 5 is out).
        assert_eq!(g.valid(3, 2, 1, 5), 0..2);
        assert!(Geometry::new((1, 1, 2, 2), 3, 1, (0, 0, 0, 0)).is_none());
    }

    #[test]
    fn epilogues_on_hand_checked_values() {
        let row = [-2f32, -0.5, 0., 3., 7.];
        let run = |e: Epilogue| {
            let mut r = row;
            e.apply(1, &mut r);
            r
        };
        assert_eq!(run(Epilogue::Relu6), [0., 0., 0., 3., 6.]);
        assert_eq!(
            run(Epilogue::PRelu(vec![9., 0.5])),
            [-1., -0.25, 0., 3., 7.]
        );
        assert_eq!(run(Epilogue::LeakyRelu(0.1))[0], -0.2);
        assert_eq!(run(Epilogue::Sigmoid)[2], 0.5);
    }
}
