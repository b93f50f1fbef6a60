//! `--draw`: boxes, keypoints, the mesh, the 68 points, head-pose axes, gaze arrows and a label
//! (age, gender, emotion) beside each box.

use faceanalysis::{Face, Point};
use image::{Rgb, RgbImage};
use imageproc::drawing::{
    draw_filled_circle_mut, draw_filled_rect_mut, draw_hollow_rect_mut, draw_line_segment_mut,
};
use imageproc::rect::Rect;

const GREEN: Rgb<u8> = Rgb([0, 255, 0]);
const RED: Rgb<u8> = Rgb([255, 0, 0]);
const BLUE: Rgb<u8> = Rgb([0, 128, 255]);
const WHITE: Rgb<u8> = Rgb([255, 255, 255]);
const BLACK: Rgb<u8> = Rgb([0, 0, 0]);
const MESH: Rgb<u8> = Rgb([180, 220, 255]);
const YELLOW: Rgb<u8> = Rgb([255, 220, 0]);
const MAGENTA: Rgb<u8> = Rgb([255, 0, 255]);

/// FaceMesh indices of the nose tip and the two iris centres (MediaPipe's topology).
const NOSE_TIP: usize = 1;
const IRIS_CENTRES: [usize; 2] = [468, 473];

/// A copy of `img` with every face's parts drawn on it.
pub fn draw(img: &RgbImage, faces: &[Face]) -> RgbImage {
    let mut canvas = img.clone();
    let unit = (img.width().max(img.height()) / 400).max(1) as i32;
    for face in faces {
        let b = face.bbox;
        for t in 0..unit {
            let w = (b.width() as i32 + 2 * t).max(1) as u32;
            let h = (b.height() as i32 + 2 * t).max(1) as u32;
            let rect = Rect::at(b.x0 as i32 - t, b.y0 as i32 - t).of_size(w, h);
            draw_hollow_rect_mut(&mut canvas, rect, GREEN);
        }
        if let Some(mesh) = &face.landmarks {
            for p in &mesh.points {
                dot(&mut canvas, p.xy(), 0, MESH);
            }
        }
        if let Some(l) = &face.landmarks68 {
            for &p in &l.points {
                dot(&mut canvas, p, unit, YELLOW);
            }
        }
        for &p in &face.detector_keypoints {
            dot(&mut canvas, p, unit + 1, BLUE);
        }
        for p in face.keypoints.iter().flat_map(|k| k.0) {
            dot(&mut canvas, p, unit + 1, RED);
        }
        let size = b.width().max(b.height());
        if let (Some(pose), Some(mesh)) = (&face.head_pose, &face.landmarks) {
            if let Some(nose) = mesh.points.get(NOSE_TIP) {
                let colours = [RED, GREEN, BLUE];
                for (axis, colour) in colours.into_iter().enumerate() {
                    // Columns of the rotation are the head's axes in the camera frame (y up).
                    let r = &pose.rotation;
                    let d = (r[0][axis], -r[1][axis]);
                    arrow(&mut canvas, nose.xy(), d, 0.5 * size, unit, colour);
                }
            }
        }
        if let (Some(gaze), Some(mesh)) = (&face.gaze, &face.landmarks) {
            for (i, eye) in IRIS_CENTRES.into_iter().zip([&gaze.right, &gaze.left]) {
                if let Some(c) = mesh.points.get(i) {
                    let d = (eye.vector[0], -eye.vector[1]);
                    arrow(&mut canvas, c.xy(), d, 0.6 * size, unit, MAGENTA);
                }
            }
        }
        label(&mut canvas, face, unit);
    }
    canvas
}

fn dot(canvas: &mut RgbImage, p: Point, radius: i32, colour: Rgb<u8>) {
    let (x, y) = (p.x.round() as i32, p.y.round() as i32);
    if radius == 0 {
        if x >= 0 && y >= 0 && (x as u32) < canvas.width() && (y as u32) < canvas.height() {
            canvas.put_pixel(x as u32, y as u32, colour);
        }
    } else {
        draw_filled_circle_mut(canvas, (x, y), radius, colour);
    }
}

fn arrow(canvas: &mut RgbImage, from: Point, d: (f32, f32), len: f32, unit: i32, c: Rgb<u8>) {
    let to = (from.x + d.0 * len, from.y + d.1 * len);
    for k in 0..unit {
        let o = k as f32 - (unit - 1) as f32 / 2.0;
        draw_line_segment_mut(canvas, (from.x + o, from.y), (to.0 + o, to.1), c);
        draw_line_segment_mut(canvas, (from.x, from.y + o), (to.0, to.1 + o), c);
    }
    draw_filled_circle_mut(canvas, (to.0 as i32, to.1 as i32), unit + 1, c);
}

/// "female 0.97, 31 y, happy" above the box (below it when there is no room).
fn label(canvas: &mut RgbImage, face: &Face, unit: i32) {
    let mut parts = Vec::new();
    if let Some(g) = &face.gender {
        parts.push(format!("{} {:.2}", g.label, g.score));
    }
    if let Some(a) = &face.age {
        parts.push(format!("{:.0} y", a.years));
    }
    if let Some(e) = &face.emotion {
        parts.push(e.label.to_string());
    }
    if parts.is_empty() {
        return;
    }
    let text = parts.join(", ");
    let scale = unit.max(1);
    let glyph = 8 * scale;
    let width = glyph * text.len() as i32 + 2 * scale;
    let x = face.bbox.x0 as i32;
    let above = face.bbox.y0 as i32 - glyph - 2 * scale;
    let y = if above >= 0 {
        above
    } else {
        face.bbox.y1 as i32 + scale
    };
    let bg = Rect::at(x, y).of_size(width as u32, (glyph + 2 * scale) as u32);
    draw_filled_rect_mut(canvas, bg, BLACK);
    for (i, ch) in text.chars().enumerate() {
        let rows = font8x8::legacy::BASIC_LEGACY
            .get(ch as usize)
            .copied()
            .unwrap_or([0; 8]);
        let gx = x + scale + i as i32 * glyph;
        for (row, bits) in rows.iter().enumerate() {
            for col in 0..8 {
                if bits >> col & 1 == 1 {
                    let r = Rect::at(gx + col * scale, y + scale + row as i32 * scale)
                        .of_size(scale as u32, scale as u32);
                    draw_filled_rect_mut(canvas, r, WHITE);
                }
            }
        }
    }
}
