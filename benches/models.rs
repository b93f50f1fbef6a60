//! Each model's forward pass at its input size, on random input, at 1 and 2 threads (batch 1
//! and 8 for the per-face models). Run with `cargo bench --bench models`; filter with e.g.
//! `cargo bench --bench models -- sface`. `tools/reference/timing.py` times the reference
//! runtimes on the same shapes.

use std::time::Duration;

use candle_core::{Device, Module, Tensor};
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use facecore::threads::ThreadPool;
use facecore::weights::WeightsSource;

/// Any model's error.
type Res<T> = Result<T, Box<dyn std::error::Error + Send + Sync>>;

/// A forward pass on one input.
type Forward = Box<dyn Fn(&Tensor) -> Res<()> + Send + Sync>;

/// A model's name, its input shape without the batch, the batches to time and its forward pass.
struct Case {
    name: &'static str,
    input: &'static [usize],
    batches: &'static [usize],
    forward: Forward,
}

fn module(m: impl Module + Send + Sync + 'static) -> Forward {
    Box::new(move |xs| {
        m.forward(xs)?;
        Ok(())
    })
}

fn cases() -> Res<Vec<Case>> {
    let src = WeightsSource::Embedded;
    let dev = Device::Cpu;
    let per_face: &'static [usize] = &[1, 8];
    let blazeface = |variant| -> Res<Forward> {
        let net = facedetect::blazeface::BlazeFace::load(variant, &src)?;
        Ok(Box::new(move |xs: &Tensor| {
            net.forward_raw(xs)?;
            Ok(())
        }))
    };
    let mesh = facelandmarks::FaceMesh::load(&src)?.net().clone();
    let sface = faceembed::SFace::load(&src)?.net().clone();
    let dlib = faceembed::dlib_resnet::DlibResNet::load(&src)?;
    let landmarks68 = facelandmarks::FaceLandmarks68::load(&src)?;
    let expression = faceexpr::FaceApiExpression::load(&src)?;
    let blendshapes = faceexpr::blendshapes::FaceBlendshapes::load(&src)?;
    use facedetect::blazeface::BlazeFaceVariant;
    Ok(vec![
        Case {
            name: "blazeface_short_range",
            input: &[3, 128, 128],
            batches: &[1],
            forward: blazeface(BlazeFaceVariant::ShortRange)?,
        },
        Case {
            name: "blazeface_full_range",
            input: &[3, 192, 192],
            batches: &[1],
            forward: blazeface(BlazeFaceVariant::FullRange)?,
        },
        Case {
            name: "retinaface_640x480",
            input: &[3, 480, 640],
            batches: &[1],
            forward: module(facedetect::retinaface::WEIGHTS.build(
                &src,
                &dev,
                facedetect::retinaface::RetinaFaceNet::new,
            )?),
        },
        Case {
            name: "facemesh",
            input: &[3, 256, 256],
            batches: per_face,
            forward: module(mesh),
        },
        Case {
            name: "blendshapes",
            input: &[146, 2],
            batches: per_face,
            forward: Box::new(move |xs| {
                blendshapes.forward(&xs.affine(100., 100.)?)?;
                Ok(())
            }),
        },
        Case {
            name: "landmarks68",
            input: &[3, 112, 112],
            batches: per_face,
            forward: Box::new(move |xs| {
                landmarks68.forward(xs)?;
                Ok(())
            }),
        },
        Case {
            name: "faceapi_expression",
            input: &[3, 112, 112],
            batches: per_face,
            forward: Box::new(move |xs| {
                expression.forward(xs)?;
                Ok(())
            }),
        },
        Case {
            name: "mini_xception",
            input: &[1, 64, 64],
            batches: per_face,
            forward: module(faceexpr::mini_xception::WEIGHTS.build(
                &src,
                &dev,
                faceexpr::MiniXception::new,
            )?),
        },
        Case {
            name: "age",
            input: &[3, 64, 64],
            batches: per_face,
            forward: module(faceattrs::age_gender::AGE_WEIGHTS.build(
                &src,
                &dev,
                faceattrs::age_gender::AgeNet::new,
            )?),
        },
        Case {
            name: "gender",
            input: &[3, 32, 32],
            batches: per_face,
            forward: module(faceattrs::age_gender::GENDER_WEIGHTS.build(
                &src,
                &dev,
                faceattrs::age_gender::GenderNet::new,
            )?),
        },
        Case {
            name: "sface",
            input: &[3, 112, 112],
            batches: per_face,
            forward: module(sface),
        },
        Case {
            name: "dlib_resnet",
            input: &[3, 150, 150],
            batches: per_face,
            forward: Box::new(move |xs| {
                dlib.forward(xs)?;
                Ok(())
            }),
        },
    ])
}

fn models(c: &mut Criterion) {
    let cases = cases().expect("embedded weights");
    let pools = [1, 2].map(|threads| (threads, ThreadPool::new(threads).expect("thread pool")));
    for case in &cases {
        let mut group = c.benchmark_group(case.name);
        for (threads, pool) in &pools {
            for &batch in case.batches {
                let mut shape = vec![batch];
                shape.extend_from_slice(case.input);
                let xs = Tensor::rand(0f32, 1., shape, &Device::Cpu).expect("input");
                let id = BenchmarkId::new(format!("{threads}t"), format!("b{batch}"));
                // The timed loop runs inside the pool, as a forward pass of `analyze` does: the
                // reference runtimes' timings include no hand-over to another thread either.
                group.bench_with_input(id, &xs, |b, xs| {
                    pool.install(|| b.iter(|| (case.forward)(xs).expect("forward")))
                });
            }
        }
        group.finish();
    }
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .sample_size(20)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2));
    targets = models
}
criterion_main!(benches);
