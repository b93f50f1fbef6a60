//! Winograd's minimal filtering F(2x2, 3x3) (Lavin and Gray, "Fast Algorithms for
//! Convolutional Neural Networks", 2016) for dense 3x3 convolutions with stride 1 and one zero
//! of padding, on bordered planes: each 2x2 block of outputs (a tile) comes from the 4x4
//! window of input around it in 16 multiplications per input channel, where the direct kernel
//! does 36.
//!
//! With `g` a 3x3 kernel, `d` a tile's 4x4 input window and
//!
//! ```text
//!      | 1    0    0  |        | 1  0 -1  0 |
//!  G = | 1/2  1/2  1/2|   Bᵀ = | 0  1  1  0 |   Aᵀ = | 1  1  1  0 |
//!      | 1/2 -1/2  1/2|        | 0 -1  1  0 |        | 0  1 -1 -1 |
//!      | 0    0    1  |        | 0  1  0 -1 |
//! ```
//!
//! the tile's outputs are `Aᵀ [Σ_c (G g Gᵀ) ⊙ (Bᵀ d B)] A`. The kernels are transformed once,
//! at load and packed as the direct kernel packs its weights; each of the 16 points of the
//! transform is then an ordinary product over the input channels, eight output channels times
//! up to three vectors of tiles held in registers. A block of a few tile rows is transformed,
//! multiplied and transformed back at a time, so that its values stay in cache. A 2x2,
//! stride-2 pooling after the convolution can pool each tile as it comes, since a tile is
//! exactly one pooling window.

use std::mem::MaybeUninit;

use super::{
    finish_sum, load, pool_pairs, run_tasks, split_batch, team_share, with_scratch, written,
    BorderedShape, DirectWeight, Epilogue, SharedPtr, Vectorized, DEPTHWISE_TAIL, DIRECT_CHANNELS,
};

/// Points of the transform: a 4x4 window.
const POINTS: usize = 16;

/// Values between the end of one point's transformed inputs or products and the start of the
/// next: one cache line, so that the 16 points of a tile, read or written together, do not
/// fall in the same cache set when a point's values are a multiple of 4 KiB.
const SKEW: usize = 16;

/// Tiles transformed and multiplied together, about: whole tile rows up to this many tiles
/// (one row when a row holds more). With 64 input channels their transformed inputs take 256
/// KiB, in the core's second-level cache. On gender's layers 64 was the fastest overall: 256
/// was as fast on the 32 → 32 layer and slower on the 64 → 64 one, 32, 48, 96 and 128 slower.
const BLOCK_TILES: usize = 64;

/// A 3x3 convolution's weight (`[O, C, 3, 3]`) transformed at load for
/// [`conv2d_winograd_bordered`]: point `p` of `G g Gᵀ` for every pair of output and input
/// channels, packed as the direct kernel packs a 1x1 convolution's weight.
#[derive(Debug, Clone)]
pub(crate) struct WinogradWeight {
    points: Vec<DirectWeight>,
    outputs: usize,
    inputs: usize,
}

impl WinogradWeight {
    /// Transforms `weight` (`[outputs, inputs, 3, 3]`, flattened); `None` when its length does
    /// not match or it has no channels.
    pub fn new(weight: &[f32], (outputs, inputs): (usize, usize)) -> Option<Self> {
        if weight.len() != outputs * inputs * 9 || outputs == 0 || inputs == 0 {
            return None;
        }
        let mut points = vec![vec![0f32; outputs * inputs]; POINTS];
        for (k, kernel) in weight.chunks_exact(9).enumerate() {
            for (point, u) in points.iter_mut().zip(transform_kernel(kernel)) {
                point[k] = u;
            }
        }
        let points = points
            .iter()
            .map(|point| DirectWeight::new(point, (outputs, inputs, 1)))
            .collect::<Option<Vec<_>>>()?;
        Some(Self {
            points,
            outputs,
            inputs,
        })
    }
}

/// `G g Gᵀ` of a 3x3 kernel `g` (row-major), row-major, computed in f64.
fn transform_kernel(g: &[f32]) -> [f32; POINTS] {
    const G: [[f64; 3]; 4] = [
        [1., 0., 0.],
        [0.5, 0.5, 0.5],
        [0.5, -0.5, 0.5],
        [0., 0., 1.],
    ];
    std::array::from_fn(|p| {
        let (gi, gj) = (G[p / 4], G[p % 4]);
        let mut sum = 0f64;
        for (a, row) in g.chunks_exact(3).enumerate() {
            for (b, &v) in row.iter().enumerate() {
                sum += gi[a] * f64::from(v) * gj[b];
            }
        }
        sum as f32
    })
}

/// A dense 3x3 convolution (stride 1, one zero on every side) of `input` (`shape`, bordered,
/// with an even height and width) by a transformed `weight` with `bias` (`[O]`, or empty) and
/// the activation, by Winograd's F(2x2, 3x3): `[N, O, H, W]`, bordered; with `pool` (`Some(max)`)
/// followed by a 2x2, stride-2 pooling of each tile (its maximum, or mean when not `max`):
/// `[N, O, H / 2, W / 2]`, bordered. An image splits over the team's threads by runs of tile
/// rows. `None` when the weight is not over `shape`'s channels
/// or the plane is empty, has an odd height, or a width that is not a whole number of the
/// CPU's vectors. Panics when `input` does not hold `shape`'s planes.
pub(crate) fn conv2d_winograd_bordered(
    shape: &BorderedShape,
    input: &[f32],
    weight: &WinogradWeight,
    bias: &[f32],
    epilogue: &Epilogue,
    pool: Option<bool>,
) -> Option<Vec<f32>> {
    let (c, h, w) = (shape.channels, shape.height, shape.width);
    let lanes = pulp::Arch::new().dispatch(Lanes);
    if weight.inputs != c || h == 0 || !h.is_multiple_of(2) || !takes(w, lanes) {
        return None;
    }
    let plane = shape.plane();
    assert_eq!(
        input.len(),
        shape.batch * c * plane,
        "conv2d_winograd_bordered: input of the wrong size"
    );
    let (tile_rows, tiles) = (h / 2, w / 2);
    let block = (BLOCK_TILES / tiles).clamp(1, tile_rows);
    let image_macs = weight.outputs * c * POINTS * tile_rows * tiles;
    let share = match split_batch(shape.batch, shape.batch * image_macs) {
        true => tile_rows,
        false => team_share(image_macs, tile_rows).unwrap_or(tile_rows),
    };
    let parts = tile_rows.div_ceil(share);
    let out_len = shape.batch * weight.outputs * output_shape(shape, pool).plane();
    let fill = |out: &mut [MaybeUninit<f32>]| {
        let out = (SharedPtr(out.as_mut_ptr().cast::<f32>()), out.len());
        run_tasks(shape.batch * parts, &|t| {
            let (image, part) = (t / parts, t % parts);
            let first = part * share;
            let task = WinogradPart {
                shape,
                input: &input[image * c * plane..(image + 1) * c * plane],
                weight,
                bias,
                epilogue,
                image,
                rows: first..(first + share).min(tile_rows),
                block,
                pool,
            };
            with_scratch(task.scratch(lanes), |scratch| {
                Vectorized::Winograd(&task, scratch, out).run()
            })
        })
    };
    // SAFETY: every part of every image runs once, and `WinogradPart::run` writes every value
    // of its tile rows' output rows (bordered rows `2 * first + 1` to `2 * end`, or `first + 1`
    // to `end` pooled, whole) in each of the image's output planes, the first part also the top
    // border row and the last part the two bottom ones; the parts' tile rows cover `0..H / 2`,
    // so every plane is written.
    Some(unsafe { written(out_len, fill) })
}

/// The shape of the output of a convolution over `shape`, pooled or not.
fn output_shape(shape: &BorderedShape, pool: Option<bool>) -> BorderedShape {
    match pool {
        Some(_) => BorderedShape {
            height: shape.height / 2,
            width: shape.width / 2,
            ..*shape
        },
        None => *shape,
    }
}

/// The values per vector of the widest instruction set the CPU has.
pub(crate) struct Lanes;

impl pulp::WithSimd for Lanes {
    type Output = usize;

    #[inline(always)]
    fn with_simd<S: pulp::Simd>(self, _: S) -> usize {
        S::F32_LANES
    }
}

/// The tile rows `rows` of image `image` of a [`conv2d_winograd_bordered`] convolution, in
/// every output channel, run by blocks of `block` tile rows, pooled when `pool` is `Some(max)`.
pub(crate) struct WinogradPart<'a> {
    shape: &'a BorderedShape,
    /// The image's bordered input planes.
    input: &'a [f32],
    weight: &'a WinogradWeight,
    bias: &'a [f32],
    epilogue: &'a Epilogue,
    image: usize,
    rows: std::ops::Range<usize>,
    block: usize,
    pool: Option<bool>,
}

impl WinogradPart<'_> {
    /// Values of the part's scratch with vectors of `lanes` values: a block's transformed
    /// inputs, then its products, then (pooled) its output rows and a pooled row.
    pub(crate) fn scratch(&self, lanes: usize) -> usize {
        let rows = self.block.min(self.rows.len());
        let [v, m, _] = self.slabs(rows, lanes);
        POINTS * (v + m) + self.lines(rows)
    }

    /// Values of the output rows of a block of `rows` tile rows and of a pooled row, when
    /// pooled (`transform_output` then writes them to scratch).
    fn lines(&self, rows: usize) -> usize {
        let w = self.shape.width;
        self.pool.map_or(0, |_| 2 * rows * w + w / 2)
    }

    /// Values per point of a block of `rows` tile rows with vectors of `lanes` values: of its
    /// transformed inputs and of its products, each `[channel][padded]` and [`SKEW`] more,
    /// and `padded`, its positions per channel (see [`Block`]) in whole 16-value blocks.
    fn slabs(&self, rows: usize, lanes: usize) -> [usize; 3] {
        let segments = rows * self.shape.width / lanes;
        let padded = (segments.div_ceil(2) * lanes).next_multiple_of(DEPTHWISE_TAIL);
        let outputs = self.weight.outputs.next_multiple_of(DIRECT_CHANNELS);
        [
            self.shape.channels * padded + SKEW,
            outputs * padded + SKEW,
            padded,
        ]
    }

    /// Computes the part block by block into `out` (the whole output, `len` values), in
    /// `scratch` ([`scratch`](Self::scratch) values).
    #[inline(always)]
    pub(crate) fn run<S: pulp::Simd>(
        &self,
        simd: S,
        scratch: &mut [f32],
        (out, len): (SharedPtr, usize),
    ) {
        let (shape, o, lanes) = (self.shape, self.weight.outputs, S::F32_LANES);
        let out_shape = output_shape(shape, self.pool);
        let (plane, out_plane, cols) = (shape.plane(), out_shape.plane(), out_shape.cols());
        let image = self.image * o * out_plane;
        assert!(
            image + o * out_plane <= len
                && scratch.len() >= self.scratch(lanes)
                && takes(shape.width, lanes),
            "conv2d_winograd_bordered: output or scratch too short, or vectors too narrow"
        );
        let c = shape.channels;
        let mut first = self.rows.start;
        while first < self.rows.end {
            let end = (first + self.block).min(self.rows.end);
            let [v_slab, m_slab, padded] = self.slabs(end - first, lanes);
            let (v, rest) = scratch.split_at_mut(POINTS * v_slab);
            let (m, rest) = rest.split_at_mut(POINTS * m_slab);
            let lines = &mut rest[..self.lines(end - first)];
            let block = Block {
                shape,
                rows: first..end,
                padded,
            };
            for (ch, input) in self.input.chunks_exact(plane).enumerate() {
                block.transform_input(simd, input, ch, v);
            }
            // Point by point, so that its transformed inputs stay in cache for every group.
            for (p, (m, v)) in m
                .chunks_exact_mut(m_slab)
                .zip(v.chunks_exact(v_slab))
                .enumerate()
            {
                let v = &v[..c * padded];
                for (group, m) in m.chunks_exact_mut(DIRECT_CHANNELS * padded).enumerate() {
                    let weights = self.weight.points[p].group(group);
                    let mut i = 0;
                    while i < padded {
                        let (v, m) = ((v, padded), &mut *m);
                        i += match (padded - i) / S::F32_LANES {
                            3.. => product::<S, 3>(simd, v, weights, i, m),
                            2 => product::<S, 2>(simd, v, weights, i, m),
                            _ => product::<S, 1>(simd, v, weights, i, m),
                        };
                    }
                }
            }
            for oc in 0..o {
                let dst = image + oc * out_plane;
                // The block's output rows: bordered rows `2 * first + 1` to `2 * end` of the
                // output plane, or `first + 1` to `end` pooled.
                let (top, count) = match self.pool {
                    Some(_) => (first + 1, end - first),
                    None => (2 * first + 1, 2 * (end - first)),
                };
                // SAFETY: those rows of output plane `oc` of the image: inside the output
                // (asserted), this part's rows, which no other task touches; the caller
                // borrows the output mutably for the run.
                let rows = unsafe {
                    std::slice::from_raw_parts_mut(
                        out.at(dst + top * cols).cast::<MaybeUninit<f32>>(),
                        count * cols,
                    )
                };
                let bias = self.bias.get(oc).copied().unwrap_or(0.);
                match self.pool {
                    None => {
                        block.transform_output(simd, m, oc, (rows, cols, 1));
                        for row in rows.chunks_exact_mut(cols) {
                            row[0].write(0.);
                            row[cols - 1].write(0.);
                        }
                        // SAFETY: `transform_output` wrote columns `1..=W` of every row, and
                        // the border columns were just written.
                        let rows = unsafe { &mut *(std::ptr::from_mut(rows) as *mut [f32]) };
                        for row in rows.chunks_exact_mut(cols) {
                            finish_sum(self.epilogue, oc, &mut row[1..cols - 1], bias, None);
                        }
                    }
                    Some(max) => {
                        let w = shape.width;
                        let (lines, pooled) = lines.split_at_mut(2 * (end - first) * w);
                        // SAFETY: initialised values seen as possibly uninitialised, to which
                        // `transform_output` only writes values.
                        let uninit =
                            unsafe { &mut *(std::ptr::from_mut(lines) as *mut [MaybeUninit<f32>]) };
                        block.transform_output(simd, m, oc, (uninit, w, 0));
                        for line in lines.chunks_exact_mut(w) {
                            finish_sum(self.epilogue, oc, line, bias, None);
                        }
                        let pairs = lines.chunks_exact(2 * w).map(|pair| pair.split_at(w));
                        for (row, pair) in rows.chunks_exact_mut(cols).zip(pairs) {
                            pool_pairs(pair, pooled, max);
                            row[0].write(0.);
                            row[1..cols - 1].write_copy_of_slice(pooled);
                            row[cols - 1].write(0.);
                        }
                    }
                }
                let zero = |from: usize, to: usize| {
                    // SAFETY: bordered rows outside every part's output rows (the top one
                    // for the first part, the two bottom ones for the last) of plane `oc`
                    // of the image, inside the output (asserted).
                    unsafe { std::ptr::write_bytes(out.at(dst + from), 0, to - from) }
                };
                if first == 0 {
                    zero(0, cols);
                }
                if end == shape.height / 2 {
                    zero((out_shape.height + 1) * cols, out_plane);
                }
            }
            first = end;
        }
    }
}

/// Whether planes `width` wide split into whole segments for vectors of `lanes` values.
pub(crate) fn takes(width: usize, lanes: usize) -> bool {
    lanes >= 2 && lanes.is_multiple_of(2) && width.is_multiple_of(lanes)
}

/// The tile rows `rows` of an image, transformed into `padded` positions per input channel
/// and point. With vectors of `L` values, each tile row is cut into segments of `L / 2`
/// tiles (`L` input or output columns) and vector `q` holds segments `2q` and `2q + 1` of the
/// block, in the order of `pulp`'s (de)interleaving shuffle: the same for every value of the
/// transform, undone when the outputs are interleaved back.
struct Block<'a> {
    shape: &'a BorderedShape,
    rows: std::ops::Range<usize>,
    padded: usize,
}

impl Block<'_> {
    /// Segment `s` of the block with vectors of `lanes` values: its tile row within the block
    /// and its first column; `None` past the block's last tile row.
    fn segment(&self, s: usize, lanes: usize) -> Option<(usize, usize)> {
        let per_row = self.shape.width / lanes;
        let row = s / per_row;
        (row < self.rows.len()).then_some((row, s % per_row * lanes))
    }

    /// Vectors of the block with vectors of `lanes` values.
    fn vectors(&self, lanes: usize) -> usize {
        (self.rows.len() * self.shape.width / lanes).div_ceil(2)
    }

    /// Writes `Bᵀ d B` of each of the block's tiles of input channel `ch` (`input`, its
    /// bordered plane) into `v` (`[point][channel][padded]`, each point's values [`SKEW`]
    /// apart).
    #[inline(always)]
    fn transform_input<S: pulp::Simd>(&self, simd: S, input: &[f32], ch: usize, v: &mut [f32]) {
        let (lanes, cols) = (S::F32_LANES, self.shape.cols());
        let slab = v.len() / POINTS;
        for q in 0..self.vectors(lanes) {
            // Where each segment's window starts: its tile row's first input row (bordered
            // row `2 * ty`), at its first column (a missing second segment reads the first).
            let start = |s: usize| {
                let (row, col) = self.segment(s, lanes)?;
                Some(2 * (self.rows.start + row) * cols + col)
            };
            let Some(x) = start(2 * q) else { break };
            let y = start(2 * q + 1).unwrap_or(x);
            // The window's rows as columns `0, 1, 2, 3` of every tile: even and odd columns
            // of the segments' input, then the same two columns on; transformed by Bᵀ as
            // they come (`bt[j]` is column `j` of Bᵀ d).
            let zero = simd.splat_f32s(0.);
            let mut d = [[zero; 4]; 4];
            for (i, d) in d.iter_mut().enumerate() {
                let (x, y) = (x + i * cols, y + i * cols);
                let [e0, o0] = simd.deinterleave_shfl_f32s(pair::<S>(input, (x, y)));
                let [e1, o1] = simd.deinterleave_shfl_f32s(pair::<S>(input, (x + 2, y + 2)));
                *d = [e0, o0, e1, o1];
            }
            let mut bt = [[zero; 4]; 4];
            for (j, bt) in bt.iter_mut().enumerate() {
                *bt = by_b(simd, [d[0][j], d[1][j], d[2][j], d[3][j]]);
            }
            let at = ch * self.padded + q * lanes;
            for (a, points) in v.chunks_exact_mut(4 * slab).enumerate() {
                let values = by_b(simd, [bt[0][a], bt[1][a], bt[2][a], bt[3][a]]);
                for (value, point) in values.into_iter().zip(points.chunks_exact_mut(slab)) {
                    store::<S>(&mut point[at..], value);
                }
            }
        }
    }

    /// Writes `Aᵀ M A` of each of the block's tiles of output channel `k` from the products
    /// `m` (`[point][channel][padded]`, each point's values [`SKEW`] apart) into `rows`, the
    /// block's output rows `pitch` values apart: columns `left..left + W` of each.
    #[inline(always)]
    fn transform_output<S: pulp::Simd>(
        &self,
        simd: S,
        m: &[f32],
        k: usize,
        (rows, pitch, left): (&mut [MaybeUninit<f32>], usize, usize),
    ) {
        let lanes = S::F32_LANES;
        let slab = m.len() / POINTS;
        for q in 0..self.vectors(lanes) {
            let at = k * self.padded + q * lanes;
            let mut mq = [simd.splat_f32s(0.); POINTS];
            for (p, mq) in mq.iter_mut().enumerate() {
                *mq = load::<S>(&m[p * slab + at..]);
            }
            // Aᵀ M (`columns[j]` is column `j` of it), then its rows by A.
            let mut columns = [[simd.splat_f32s(0.); 2]; 4];
            for (j, column) in columns.iter_mut().enumerate() {
                *column = by_a(simd, [mq[j], mq[4 + j], mq[8 + j], mq[12 + j]]);
            }
            let top = by_a(
                simd,
                [columns[0][0], columns[1][0], columns[2][0], columns[3][0]],
            );
            let bottom = by_a(
                simd,
                [columns[0][1], columns[1][1], columns[2][1], columns[3][1]],
            );
            let (top, bottom) = (
                simd.interleave_shfl_f32s(top),
                simd.interleave_shfl_f32s(bottom),
            );
            for (half, s) in [2 * q, 2 * q + 1].into_iter().enumerate() {
                if let Some((row, col)) = self.segment(s, lanes) {
                    let at = 2 * row * pitch + left + col;
                    rows[at..at + lanes].write_copy_of_slice(as_values::<S>(&top[half]));
                    let at = at + pitch;
                    rows[at..at + lanes].write_copy_of_slice(as_values::<S>(&bottom[half]));
                }
            }
        }
    }
}

/// Positions `i..i + N * lanes` of one point's products for a group of
/// [`DIRECT_CHANNELS`] output channels: `m[k][i..]` (`[channel][padded]`) is the sum over the
/// input channels `c` of `weights[c][k]` times `v[c][i..]` (`v` holding `[channel][padded]`);
/// returns the positions done.
#[inline(always)]
fn product<S: pulp::Simd, const N: usize>(
    simd: S,
    (v, padded): (&[f32], usize),
    weights: &[f32],
    i: usize,
    m: &mut [f32],
) -> usize {
    let lanes = S::F32_LANES;
    let mut acc = [[simd.splat_f32s(0.); N]; DIRECT_CHANNELS];
    let mut x = [simd.splat_f32s(0.); N];
    let planes = v.chunks_exact(padded).map(|plane| &plane[i..i + N * lanes]);
    for (plane, w) in planes.zip(weights.as_chunks::<DIRECT_CHANNELS>().0) {
        for (x, values) in x.iter_mut().zip(plane.chunks_exact(lanes)) {
            *x = load::<S>(values);
        }
        for (acc, &w) in acc.iter_mut().zip(w) {
            let w = simd.splat_f32s(w);
            for (a, &x) in acc.iter_mut().zip(&x) {
                *a = simd.mul_add_e_f32s(x, w, *a);
            }
        }
    }
    for (k, acc) in acc.iter().enumerate() {
        for (n, &a) in acc.iter().enumerate() {
            store::<S>(&mut m[k * padded + i + n * lanes..], a);
        }
    }
    N * lanes
}

/// The vectors of `values` at `x` and at `y`.
#[inline(always)]
fn pair<S: pulp::Simd>(values: &[f32], (x, y): (usize, usize)) -> [S::f32s; 2] {
    [load::<S>(&values[x..]), load::<S>(&values[y..])]
}

/// `values` written at the start of `dst`.
#[inline(always)]
fn store<S: pulp::Simd>(dst: &mut [f32], values: S::f32s) {
    dst[..S::F32_LANES].copy_from_slice(as_values::<S>(&values));
}

/// The values of a vector.
#[inline(always)]
fn as_values<S: pulp::Simd>(values: &S::f32s) -> &[f32] {
    pulp::bytemuck::cast_slice(std::slice::from_ref(values))
}

/// `Bᵀ x` for a column `x` of four vectors (and `x B` for a row).
#[inline(always)]
fn by_b<S: pulp::Simd>(simd: S, x: [S::f32s; 4]) -> [S::f32s; 4] {
    [
        simd.sub_f32s(x[0], x[2]),
        simd.add_f32s(x[1], x[2]),
        simd.sub_f32s(x[2], x[1]),
        simd.sub_f32s(x[1], x[3]),
    ]
}

/// `Aᵀ x` for a column `x` of four vectors (and `x A` for a row).
#[inline(always)]
fn by_a<S: pulp::Simd>(simd: S, x: [S::f32s; 4]) -> [S::f32s; 2] {
    [
        simd.add_f32s(simd.add_f32s(x[0], x[1]), x[2]),
        simd.sub_f32s(simd.sub_f32s(x[1], x[2]), x[3]),
    ]
}

#[cfg(all(test, target_arch = "x86_64"))]
mod tests {
    use super::*;
    use crate::kernels::border;

    /// Pseudo-random values in `[-1, 1)`.
    fn values(n: usize, seed: u32) -> Vec<f32> {
        (0..n as u32)
            .map(|i| {
                let bits = i.wrapping_mul(2_654_435_761).wrapping_add(seed) >> 8;
                bits as f32 / (1u32 << 23) as f32 - 1.
            })
            .collect()
    }

    /// The kernel on AVX2's 8-lane vectors (`pulp`'s V3 shuffles, the order of its lanes
    /// another) against the width the CPU dispatches to, where the CPU has AVX2: both
    /// plain and pooled, every output written.
    #[test]
    fn eight_lane_vectors_give_the_dispatched_convolution() {
        let Some(v3) = pulp::x86::V3::try_new() else {
            return;
        };
        let shape = BorderedShape {
            batch: 1,
            channels: 16,
            height: 10,
            width: 16,
        };
        let (o, c) = (12, shape.channels);
        let plain = values(c * shape.height * shape.width, 1);
        let input = border(&shape, &plain);
        let weight = WinogradWeight::new(&values(o * c * 9, 2), (o, c)).unwrap();
        let bias = values(o, 3);
        let epilogue = Epilogue::Relu;
        for pool in [None, Some(false), Some(true)] {
            let want =
                conv2d_winograd_bordered(&shape, &input, &weight, &bias, &epilogue, pool).unwrap();
            let tile_rows = shape.height / 2;
            let task = WinogradPart {
                shape: &shape,
                input: &input,
                weight: &weight,
                bias: &bias,
                epilogue: &epilogue,
                image: 0,
                rows: 0..tile_rows,
                block: (BLOCK_TILES / (shape.width / 2)).clamp(1, tile_rows),
                pool,
            };
            let mut scratch = vec![0.; task.scratch(8)];
            let mut got = vec![f32::NAN; want.len()];
            let out = (SharedPtr(got.as_mut_ptr()), got.len());
            pulp::Simd::vectorize(v3, Vectorized::Winograd(&task, &mut scratch, out));
            for (i, (g, w)) in got.iter().zip(&want).enumerate() {
                assert!(
                    (g - w).abs() <= 1e-5 * w.abs().max(1.),
                    "{pool:?} {i}: {g} {w}"
                );
            }
        }
    }
}
