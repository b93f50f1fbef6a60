//! The pointwise product of a [`separable`](super::separable) tile on AVX-512: `dst[r][j] =
//! Σ_l lhs[r][l] · rhs[l][j]` for a few output channels (`r`, rows of the kernel) and a span
//! of positions (`j`, the tile's values of every input channel, rows of `rhs`).
//!
//! Blocks of up to eight output channels times three vectors of positions are held in 24
//! registers across the input channels: each input channel's three vectors of positions are
//! loaded once and multiplied by its eight weights, each broadcast from the kernel's rows as
//! stored. Unlike `gemm`, it packs neither matrix on each call: the tile's rows are already
//! contiguous runs of positions, and the kernel is small enough to stay in cache. Measured at
//! one thread against `gemm` (a throwaway program, warm caches): 48 x 64 by 64 x 576 22.6
//! against 27.5 µs, 32 x 128 by 128 x 576 28.4 against 32.6, 16 x 16 by 16 x 4096 15.5 against
//! 21.5.

/// Output channels of a block: eight rows of three vectors take 24 of the 32 registers, the
/// input's three vectors and a broadcast weight four more.
const ROWS: usize = 8;

/// Lanes of an AVX-512 vector of `f32`.
const LANES: usize = 16;

/// Writes `lhs (m x k, row-major) * rhs (k x n, row stride rhs_rs)` into `dst` (row `r` at `dst
/// + r * dst_rs`, `n` values) and returns `true`; or returns `false` having written nothing
/// when the CPU lacks AVX-512F. Panics when `lhs` or `rhs` is too short for its matrix.
///
/// # Safety
/// `dst` must be valid for writes of `dst[r * dst_rs + j]` for every `r < m`, `j < n`, and no
/// other thread may access those values during the call.
pub(super) unsafe fn product(
    dst: *mut f32,
    dst_rs: usize,
    lhs: &[f32],
    rhs: &[f32],
    (m, n, k): (usize, usize, usize),
    rhs_rs: usize,
) -> bool {
    assert!(lhs.len() >= m * k, "product: left matrix too short");
    assert!(
        k == 0 || n == 0 || rhs.len() >= (k - 1) * rhs_rs + n,
        "product: right matrix too short"
    );
    #[cfg(target_arch = "x86_64")]
    if std::is_x86_feature_detected!("avx512f") {
        if k == 0 {
            // An empty sum: zeros.
            for r in 0..m {
                // SAFETY: row `r < m` of `dst`, its `n` values (the caller's).
                unsafe { std::ptr::write_bytes(dst.add(r * dst_rs), 0, n) };
            }
        } else if m > 0 && n > 0 {
            let rhs = (rhs.as_ptr(), rhs_rs);
            // SAFETY: the CPU has AVX-512F (checked above); `lhs` and `rhs` hold every value
            // the blocks read (asserted above) and the caller guarantees `dst`'s rows.
            unsafe { blocks(dst, dst_rs, lhs.as_ptr(), rhs, (m, n, k)) };
        }
        return true;
    }
    let _ = (dst, dst_rs);
    false
}

/// [`product`] in blocks: positions in runs of up to three vectors (the last one's lanes past
/// `n` masked off), and in each run the rows eight at a time, then four, two and one.
///
/// # Safety
/// The CPU has AVX-512F; `lhs` points to `m x k` values, `rhs.0` to `k` rows of `n` values at
/// stride `rhs.1`, and `dst` is as [`product`] requires; `m, n, k > 0`.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn blocks(
    dst: *mut f32,
    dst_rs: usize,
    lhs: *const f32,
    rhs: (*const f32, usize),
    (m, n, k): (usize, usize, usize),
) {
    let mut p = 0;
    while p < n {
        let left = n - p;
        let (vectors, last) = match (left / LANES, left % LANES) {
            (3.., _) => (3, u16::MAX),
            (full, 0) => (full, u16::MAX),
            (full, rest) => (full + 1, (1u16 << rest) - 1),
        };
        let mut r = 0;
        while r < m {
            let rows = match m - r {
                ROWS.. => ROWS,
                4.. => 4,
                2.. => 2,
                _ => 1,
            };
            // SAFETY: rows `r..r + rows` (below `m`) of `lhs` and `dst`, positions `p..p + 16 *
            // vectors` of `rhs`'s rows and `dst`'s, of which the lanes at `n` and past are
            // masked off (`last`).
            unsafe {
                let (d, l, x) = (
                    dst.add(r * dst_rs + p),
                    lhs.add(r * k),
                    (rhs.0.add(p), rhs.1),
                );
                let at = (d, dst_rs, l, x, k, last);
                match (rows, vectors) {
                    (ROWS, 3) => block::<ROWS, 3>(at),
                    (ROWS, 2) => block::<ROWS, 2>(at),
                    (ROWS, _) => block::<ROWS, 1>(at),
                    (4, 3) => block::<4, 3>(at),
                    (4, 2) => block::<4, 2>(at),
                    (4, _) => block::<4, 1>(at),
                    (2, 3) => block::<2, 3>(at),
                    (2, 2) => block::<2, 2>(at),
                    (2, _) => block::<2, 1>(at),
                    (_, 3) => block::<1, 3>(at),
                    (_, 2) => block::<1, 2>(at),
                    (_, _) => block::<1, 1>(at),
                }
            }
            r += rows;
        }
        p += left.min(3 * LANES);
    }
}

/// `R` rows (`lhs`, `k` values each) times `V` vectors of positions (`rhs`, `k` rows at its
/// stride), the last vector's lanes limited to `last`: summed in registers over the `k` input
/// channels and stored at `dst` (row stride `dst_rs`).
///
/// # Safety
/// As [`blocks`], for `R` rows of `lhs` and `dst` and the unmasked lanes of `V` vectors of
/// positions of `rhs`'s rows and `dst`'s.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
#[inline]
unsafe fn block<const R: usize, const V: usize>(
    (dst, dst_rs, lhs, (rhs, rhs_rs), k, last): (
        *mut f32,
        usize,
        *const f32,
        (*const f32, usize),
        usize,
        u16,
    ),
) {
    use std::arch::x86_64::{
        __m512, _mm512_fmadd_ps, _mm512_loadu_ps, _mm512_mask_storeu_ps, _mm512_maskz_loadu_ps,
        _mm512_set1_ps, _mm512_setzero_ps, _mm512_storeu_ps,
    };
    let mut acc = [[_mm512_setzero_ps(); V]; R];
    for l in 0..k {
        // SAFETY: row `l < k` of `rhs`, its vectors' unmasked lanes (the caller's).
        let x: [__m512; V] = std::array::from_fn(|v| unsafe {
            let at = rhs.add(l * rhs_rs + v * LANES);
            match v + 1 == V {
                true => _mm512_maskz_loadu_ps(last, at),
                false => _mm512_loadu_ps(at),
            }
        });
        for (r, acc) in acc.iter_mut().enumerate() {
            // SAFETY: `lhs[r * k + l]`, `r < R`, `l < k` (the caller's rows).
            let w = _mm512_set1_ps(unsafe { *lhs.add(r * k + l) });
            for (a, &x) in acc.iter_mut().zip(&x) {
                *a = _mm512_fmadd_ps(w, x, *a);
            }
        }
    }
    for (r, acc) in acc.iter().enumerate() {
        for (v, &sum) in acc.iter().enumerate() {
            // SAFETY: row `r < R` of `dst`, vector `v`'s unmasked lanes (the caller's).
            unsafe {
                let at = dst.add(r * dst_rs + v * LANES);
                match v + 1 == V {
                    true => _mm512_mask_storeu_ps(at, last, sum),
                    false => _mm512_storeu_ps(at, sum),
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::tests::values;

    /// The product against its bounds-checked twin, where the CPU has AVX-512F (elsewhere it
    /// must decline and write nothing): blocks of eight, four, two and one rows, runs of three,
    /// two and one vectors with and without a masked last one, an empty sum (zeros), strided
    /// rows on both sides, and every value outside the rows' `n` left as it was.
    #[test]
    fn product_matches_its_bounds_checked_twin() {
        let sentinel = 12345.;
        for (m, n, k) in [
            (1, 1, 1),
            (3, 5, 2),
            (8, 48, 16),
            (15, 49, 7),
            (12, 31, 64),
            (27, 100, 33),
            (16, 4, 128),
            (5, 16, 1),
            (3, 20, 0),
        ] {
            let (rhs_rs, dst_rs) = (n + 3, n + 5);
            let lhs = values(m * k, 3);
            let rhs = values(k.checked_sub(1).map_or(0, |l| l * rhs_rs + n), 7);
            let mut dst = vec![sentinel; (m - 1) * dst_rs + n + 4];
            // SAFETY: `dst` holds `m` rows of `n` values at stride `dst_rs`.
            let done = unsafe { product(dst.as_mut_ptr(), dst_rs, &lhs, &rhs, (m, n, k), rhs_rs) };
            if !done {
                assert!(dst.iter().all(|&v| v == sentinel), "declined but wrote");
                continue;
            }
            for (i, &got) in dst.iter().enumerate() {
                let (r, j) = (i / dst_rs, i % dst_rs);
                if r >= m || j >= n {
                    assert_eq!(got, sentinel, "{m}x{n}x{k}: wrote outside at {i}");
                    continue;
                }
                let want: f32 = (0..k).map(|l| lhs[r * k + l] * rhs[l * rhs_rs + j]).sum();
                assert!(
                    (got - want).abs() <= 1e-5 * (1. + want.abs()),
                    "{m}x{n}x{k} at ({r}, {j}): {got} vs {want}"
                );
            }
        }
    }
}
