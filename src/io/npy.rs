//! Writing and reading float32 `.npy` arrays (NumPy format 1.0), the stable output of
//! `lumen logits` for comparing against other implementations.

use crate::{Error, Result};
use std::path::Path;

/// Encodes a little-endian float32 array of `shape` as `.npy` bytes.
pub fn encode_f32(shape: &[usize], data: &[f32]) -> Result<Vec<u8>> {
    if shape.iter().product::<usize>() != data.len() {
        return Err(Error::Data(format!("npy: shape {shape:?} does not hold {} values", data.len())));
    }
    let dims: Vec<String> = shape.iter().map(|d| d.to_string()).collect();
    let shape_txt = if dims.len() == 1 { format!("({},)", dims[0]) } else { format!("({})", dims.join(", ")) };
    let mut header = format!("{{'descr': '<f4', 'fortran_order': False, 'shape': {shape_txt}, }}");
    // Magic (6) + version (2) + length (2) + header + '\n' is padded to a multiple of 64.
    let total = (10 + header.len() + 1).next_multiple_of(64);
    header.push_str(&" ".repeat(total - 10 - header.len() - 1));
    header.push('\n');
    let mut out = Vec::with_capacity(total + data.len() * 4);
    out.extend_from_slice(b"\x93NUMPY\x01\x00");
    out.extend_from_slice(&(header.len() as u16).to_le_bytes());
    out.extend_from_slice(header.as_bytes());
    for v in data {
        out.extend_from_slice(&v.to_le_bytes());
    }
    Ok(out)
}

/// Writes a float32 array to `path`.
pub fn write_f32(path: &Path, shape: &[usize], data: &[f32]) -> Result<()> {
    std::fs::write(path, encode_f32(shape, data)?).map_err(|e| Error::Io(format!("{}: {e}", path.display())))
}

/// Reads a float32 `.npy` written by [`write_f32`] or NumPy (C order, little-endian).
pub fn read_f32(bytes: &[u8]) -> Result<(Vec<usize>, Vec<f32>)> {
    let bad = |m: &str| Error::Data(format!("npy: {m}"));
    if bytes.len() < 10 || &bytes[..6] != b"\x93NUMPY" || bytes[6] != 1 {
        return Err(bad("not a version 1 .npy file"));
    }
    let hl = u16::from_le_bytes([bytes[8], bytes[9]]) as usize;
    let header = std::str::from_utf8(bytes.get(10..10 + hl).ok_or_else(|| bad("truncated header"))?)
        .map_err(|_| bad("header is not text"))?;
    if !header.contains("'descr': '<f4'") || !header.contains("'fortran_order': False") {
        return Err(bad("only little-endian float32 in C order is supported"));
    }
    let s = header.split("'shape': (").nth(1).and_then(|r| r.split(')').next()).ok_or_else(|| bad("no shape"))?;
    let shape: Vec<usize> = s
        .split(',')
        .map(str::trim)
        .filter(|x| !x.is_empty())
        .map(|x| x.parse().map_err(|_| bad("bad shape")))
        .collect::<Result<_>>()?;
    let body = &bytes[10 + hl..];
    let n: usize = shape.iter().product();
    if body.len() != n * 4 {
        return Err(bad("data length does not match the shape"));
    }
    Ok((shape, body.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect()))
}

#[cfg(test)]
mod tests {
    #[test]
    fn npy_round_trips_and_aligns_its_header() {
        let b = super::encode_f32(&[3], &[1.0, -2.5, 3.25]).unwrap();
        assert_eq!((b.len() - 12) % 64, 0);
        assert_eq!(super::read_f32(&b).unwrap(), (vec![3], vec![1.0, -2.5, 3.25]));
        let b = super::encode_f32(&[2, 2], &[1.0; 4]).unwrap();
        assert_eq!(super::read_f32(&b).unwrap().0, vec![2, 2]);
        assert!(super::encode_f32(&[5], &[1.0]).is_err());
        assert!(super::read_f32(b"nonsense").is_err());
    }
}
