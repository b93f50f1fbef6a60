//! Single layers of facecore at shapes the small models run (BlazeFace full range's 96x96 and
//! 24x24 stages and its stem), one thread, so that a kernel change can be timed without the
//! noise of a whole model. Run with `cargo bench --bench layers`.

use std::time::Duration;

use candle_core::{Device, Module, Tensor};
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use facecore::layers::{Activation, Conv2d, Conv2dSpec, Padding};
use facecore::threads::ThreadPool;

/// A layer of `spec` with random weights and a ReLU.
fn layer(spec: Conv2dSpec) -> candle_core::Result<Conv2d> {
    let dev = Device::Cpu;
    let w = Tensor::rand(-1f32, 1., spec.weight_shape(), &dev)?;
    let b = Tensor::rand(-1f32, 1., spec.out_channels, &dev)?;
    Conv2d::from_tensors(w, Some(b), spec, Activation::Relu)
}

fn layers(c: &mut Criterion) {
    let pool = ThreadPool::new(1).expect("thread pool");
    let dw = |c, s| Conv2dSpec::depthwise(c, 3, s).with_padding(Padding::Same);
    let pw = |i, o| Conv2dSpec::new(i, o, 1, 1);
    // (name, layer, input channels x height x width)
    let cases = [
        ("depthwise_32_96", dw(32, 1), [32, 96, 96]),
        ("depthwise_32_96_s2", dw(32, 2), [32, 96, 96]),
        ("depthwise_8_96", dw(8, 1), [8, 96, 96]),
        ("depthwise_128_24", dw(128, 1), [128, 24, 24]),
        ("depthwise_384_6", dw(384, 1), [384, 6, 6]),
        ("pointwise_32_8_96", pw(32, 8), [32, 96, 96]),
        ("pointwise_8_32_96", pw(8, 32), [8, 96, 96]),
        ("pointwise_128_32_24", pw(128, 32), [128, 24, 24]),
        (
            "stem_3_32_192",
            Conv2dSpec::new(3, 32, 3, 2).with_padding(Padding::Same),
            [3, 192, 192],
        ),
    ];
    let mut group = c.benchmark_group("layers");
    for (name, spec, [ch, h, w]) in cases {
        let layer = layer(spec).expect("layer");
        let xs = Tensor::rand(0f32, 1., (1, ch, h, w), &Device::Cpu).expect("input");
        // The loop runs inside the pool: no hand-over to its thread per call.
        group.bench_with_input(BenchmarkId::new(name, "1t"), &xs, |b, xs| {
            pool.install(|| b.iter(|| layer.forward(xs).expect("forward")))
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
