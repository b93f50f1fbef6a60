//! Single layers of facecore at shapes the small models run (BlazeFace full range's 96x96 and
//! 24x24 stages and its stem, the first block's depthwise and pointwise pair as one separable
//! layer, the strided depthwise layers plain and on bordered planes, gender's 3x3 convolutions
//! plain and on bordered planes, SFace's dense head at batch 1
//! in f32 and int8), one thread, so
//! that a kernel change can be timed without the noise of a whole model. Run with `cargo bench --bench layers`.

use std::time::Duration;

use candle_core::{Device, Module, Tensor};
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use facecore::layers::{
    Activation, Bordered, Conv2d, Conv2dSpec, Linear, Padding, QuantizedLinear, Separable,
};
use facecore::threads::ThreadPool;

/// A convolution of `spec` with random weights and a ReLU.
fn conv2d(spec: Conv2dSpec) -> candle_core::Result<Conv2d> {
    let dev = Device::Cpu;
    let w = Tensor::rand(-1f32, 1., spec.weight_shape(), &dev)?;
    let b = Tensor::rand(-1f32, 1., spec.out_channels, &dev)?;
    Conv2d::from_tensors(w, Some(b), spec, Activation::Relu)
}

/// The same as a boxed layer.
fn layer(spec: Conv2dSpec) -> candle_core::Result<Box<dyn Module + Sync>> {
    Ok(Box::new(conv2d(spec)?))
}

/// A dense layer `inputs` → `outputs` with random weights and bias.
fn dense(inputs: usize, outputs: usize) -> candle_core::Result<Box<dyn Module + Sync>> {
    let dev = Device::Cpu;
    let w = Tensor::rand(-1f32, 1., (outputs, inputs), &dev)?;
    let b = Tensor::rand(-1f32, 1., outputs, &dev)?;
    Ok(Box::new(Linear::new(w, Some(b))?))
}

/// The same with an int8 weight in blocks of 64 inputs (SFace's), pseudo-random values.
fn quantized_dense(inputs: usize, outputs: usize) -> candle_core::Result<Box<dyn Module + Sync>> {
    let bytes = |n: usize, seed: u32| -> Vec<i8> {
        (0..n as u32)
            .map(|i| (i.wrapping_mul(2_654_435_761).wrapping_add(seed) >> 24) as u8 as i8)
            .collect()
    };
    let blocks = outputs * inputs / 64;
    let scales = vec![1e-4; blocks];
    Ok(Box::new(QuantizedLinear::new(
        &bytes(outputs * inputs, 1),
        (outputs, inputs),
        (&scales, &bytes(blocks, 2), 64),
        Some(vec![0.5; outputs]),
    )?))
}

fn layers(c: &mut Criterion) {
    let pool = ThreadPool::new(1).expect("thread pool");
    let dw = |c, s| Conv2dSpec::depthwise(c, 3, s).with_padding(Padding::Same);
    let pw = |i, o| Conv2dSpec::new(i, o, 1, 1);
    let conv = |spec, shape: [usize; 3]| (layer(spec), vec![1, shape[0], shape[1], shape[2]]);
    // (name, (layer, input shape))
    let cases = [
        ("depthwise_32_96", conv(dw(32, 1), [32, 96, 96])),
        ("depthwise_32_96_s2", conv(dw(32, 2), [32, 96, 96])),
        ("depthwise_128_24_s2", conv(dw(128, 2), [128, 24, 24])),
        ("depthwise_8_96", conv(dw(8, 1), [8, 96, 96])),
        ("depthwise_128_24", conv(dw(128, 1), [128, 24, 24])),
        ("depthwise_384_6", conv(dw(384, 1), [384, 6, 6])),
        ("pointwise_32_8_96", conv(pw(32, 8), [32, 96, 96])),
        ("pointwise_8_32_96", conv(pw(8, 32), [8, 96, 96])),
        ("pointwise_128_32_24", conv(pw(128, 32), [128, 24, 24])),
        (
            "stem_3_32_192",
            conv(
                Conv2dSpec::new(3, 32, 3, 2).with_padding(Padding::Same),
                [3, 192, 192],
            ),
        ),
        // Gender's second and fourth convolutions (the direct kernel).
        (
            "conv3x3_32_32_32",
            conv(Conv2dSpec::new(32, 32, 3, 1), [32, 32, 32]),
        ),
        (
            "conv3x3_64_64_16",
            conv(Conv2dSpec::new(64, 64, 3, 1), [64, 16, 16]),
        ),
        ("dense_50176_128", (dense(50176, 128), vec![1, 50176])),
        (
            "quantized_dense_50176_128",
            (quantized_dense(50176, 128), vec![1, 50176]),
        ),
    ];
    let mut group = c.benchmark_group("layers");
    for (name, (layer, shape)) in cases {
        let layer = layer.expect("layer");
        let xs = Tensor::rand(0f32, 1., shape, &Device::Cpu).expect("input");
        // The loop runs inside the pool: no hand-over to its thread per call.
        group.bench_with_input(BenchmarkId::new(name, "1t"), &xs, |b, xs| {
            pool.install(|| b.iter(|| layer.forward(xs).expect("forward")))
        });
    }
    // The first two cases' depthwise and pointwise layers as one separable layer on bordered
    // activations (BlazeFace full range's first block).
    let separable = Separable::new(
        conv2d(dw(32, 1)).expect("depthwise"),
        conv2d(pw(32, 8)).expect("pointwise"),
    )
    .expect("separable");
    let xs = Tensor::rand(0f32, 1., (1, 32, 96, 96), &Device::Cpu).expect("input");
    let xs = Bordered::new(&xs).expect("bordered input");
    group.bench_with_input(BenchmarkId::new("separable_32_8_96", "1t"), &xs, |b, xs| {
        pool.install(|| b.iter(|| separable.forward(xs, None).expect("forward")))
    });
    // BlazeFace full range's strided blocks' first layers on bordered activations, as the
    // network runs them (read in place), at its first and third stride-2 blocks.
    for (name, (c, side)) in [
        ("depthwise_32_96_s2", (32, 96)),
        ("depthwise_128_24_s2", (128, 24)),
    ] {
        let conv = conv2d(dw(c, 2)).expect("depthwise");
        let xs = Tensor::rand(0f32, 1., (1, c, side, side), &Device::Cpu).expect("input");
        let xs = Bordered::new(&xs).expect("bordered input");
        group.bench_with_input(BenchmarkId::new(name, "1t bordered"), &xs, |b, xs| {
            pool.install(|| b.iter(|| conv.forward_from_bordered(xs).expect("forward")))
        });
    }
    // Gender's second and fourth convolutions on bordered activations, as the network runs
    // them (Winograd's F(2x2, 3x3)).
    for (name, (c, side)) in [
        ("conv3x3_32_32_32", (32, 32)),
        ("conv3x3_64_64_16", (64, 16)),
    ] {
        let conv = conv2d(Conv2dSpec::new(c, c, 3, 1)).expect("convolution");
        let xs = Tensor::rand(0f32, 1., (1, c, side, side), &Device::Cpu).expect("input");
        let xs = Bordered::new(&xs).expect("bordered input");
        group.bench_with_input(BenchmarkId::new(name, "1t bordered"), &xs, |b, xs| {
            pool.install(|| b.iter(|| conv.forward_bordered(xs).expect("forward")))
        });
    }
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .sample_size(20)
        .warm_up_time(Duration::from_millis(300))
        .measurement_time(Duration::from_secs(1));
    targets = layers
}
criterion_main!(benches);
