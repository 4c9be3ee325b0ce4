//! hayro-jpeg2000 (pure Rust, no unsafe) and openjp2 (OpenJPEG ported to Rust, through
//! jpeg2k) on the codestreams of make_data.py: each output against OpenJPEG's, and the
//! time of each (one thread, the mean of 10 decodes).
use std::time::Instant;
fn stats(a: &[u8], b: &[u8]) -> (f64, u8) {
    let mut sum = 0u64; let mut max = 0u8;
    for (x, y) in a.iter().zip(b) { let d = x.abs_diff(*y); sum += d as u64; max = max.max(d); }
    (sum as f64 / a.len() as f64, max)
}
fn hayro(data: &[u8]) -> Vec<u8> {
    let img = hayro_jpeg2000::Image::new(data, &hayro_jpeg2000::DecodeSettings::default()).unwrap();
    let mut ctx = hayro_jpeg2000::DecoderContext::default();
    img.decode(&mut ctx).unwrap().data_u8()
}
fn openjp2(data: &[u8]) -> Vec<u8> {
    let img = jpeg2k::Image::from_bytes(data).unwrap();
    let px = img.get_pixels(None).unwrap();
    match px.data { jpeg2k::ImagePixelData::Rgb8(v) => v, other => panic!("{:?}", std::mem::discriminant(&other)) }
}
fn main() {
    let arg = std::env::args().nth(1).expect("usage: j2k_candidates DATA_DIR");
    let dir = std::path::Path::new(&arg);
    let cases: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(dir.join("cases.json")).unwrap()).unwrap();
    let reps = 10;
    let (mut th, mut to, mut px) = (0f64, 0f64, 0u64);
    for c in cases.as_array().unwrap() {
        let f = c["file"].as_str().unwrap();
        let data = std::fs::read(dir.join(format!("{f}.j2c"))).unwrap();
        let want = std::fs::read(dir.join(format!("{f}.rgb"))).unwrap();
        let src = std::fs::read(dir.join(format!("{f}.src"))).unwrap();
        let h = hayro(&data); let o = openjp2(&data);
        let t = Instant::now(); for _ in 0..reps { std::hint::black_box(hayro(&data)); } let dh = t.elapsed().as_secs_f64() / reps as f64;
        let t = Instant::now(); for _ in 0..reps { std::hint::black_box(openjp2(&data)); } let dopj = t.elapsed().as_secs_f64() / reps as f64;
        th += dh; to += dopj; px += (src.len() / 3) as u64;
        let (hm, hx) = stats(&h, &want); let (om, ox) = stats(&o, &want);
        let (hs, _) = stats(&h, &src);
        println!("{f:22} {:>7} B  hayro {:6.2} ms (vs OpenJPEG mean {hm:.4} max {hx}; vs source mean {hs:.3})  openjp2 {:6.2} ms (mean {om:.4} max {ox})", data.len(), dh*1e3, dopj*1e3);
    }
    println!("total: hayro {:.1} Mpx/s, openjp2 {:.1} Mpx/s (one thread)", px as f64 / th / 1e6 * reps as f64 / reps as f64, px as f64 / to / 1e6);
}
