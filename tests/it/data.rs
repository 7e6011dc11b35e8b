//! The IDX reader and the bundled data.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};
use wgpu_nn::Error;
use wgpu_nn::data::{self, Dataset, idx};

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("wgpu-nn-data-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir.join(name)
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    encoder.write_all(bytes).unwrap();
    encoder.finish().unwrap()
}

/// The problem an IDX file's error names, asserting it names the file too.
fn problem(result: Result<impl std::fmt::Debug, Error>, path: &Path) -> String {
    match result {
        Err(Error::Data { file, problem }) => {
            assert_eq!(file, path.display().to_string());
            problem
        }
        other => panic!("expected a data error for {}, got {other:?}", path.display()),
    }
}

#[test]
fn bundled_files_match_their_checksums() {
    let readme =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("data/README.md")).unwrap();
    let mut checked = 0;
    for line in readme.lines().filter(|l| l.starts_with("| ") && l.contains("-ubyte.gz")) {
        let cells: Vec<&str> = line.split('|').map(str::trim).collect();
        let (name, decompressed_sha) = (cells[1], cells[6]);
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("data").join(name);
        let mut bytes = Vec::new();
        flate2::read::GzDecoder::new(std::fs::File::open(&path).unwrap()).read_to_end(&mut bytes).unwrap();
        let digest: String = Sha256::digest(&bytes).iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(digest, decompressed_sha, "{name}");
        checked += 1;
    }
    assert_eq!(checked, 8, "every bundled file is listed and checked");
}

#[test]
fn bundled_mnist_loads_with_its_documented_split() {
    let (train, test) = data::bundled_mnist().unwrap();
    assert_eq!((train.len(), test.len(), train.width()), (8000, 2000, 784));
    let mut counts = [0; 10];
    test.labels().unwrap().iter().for_each(|&l| counts[l as usize] += 1);
    assert_eq!(counts, [200, 225, 198, 206, 196, 173, 203, 214, 189, 196], "data/README.md's test split");
    assert!(train.inputs().iter().all(|&p| (0.0..=1.0).contains(&p)));
    assert!(train.inputs().contains(&1.0) && train.inputs().contains(&0.0));
    let (train8, test8) = data::bundled_digits8x8().unwrap();
    assert_eq!((train8.len(), test8.len(), train8.width()), (1437, 360, 64));
}

#[test]
fn idx_round_trips_plain_and_gzip() {
    let images = idx::Images::new(3, 2, 5, (0..30).collect()).unwrap();
    let labels = vec![0, 9, 4];
    let (image_path, label_path) = (scratch("round-images"), scratch("round-labels"));
    idx::write_images(&image_path, &images).unwrap();
    idx::write_labels(&label_path, &labels).unwrap();
    assert_eq!(idx::read_images(&image_path).unwrap(), images);
    assert_eq!(idx::read_labels(&label_path).unwrap(), labels);

    let (image_gz, label_gz) = (scratch("round-images.gz"), scratch("round-labels.gz"));
    std::fs::write(&image_gz, gzip(&std::fs::read(&image_path).unwrap())).unwrap();
    std::fs::write(&label_gz, gzip(&std::fs::read(&label_path).unwrap())).unwrap();
    assert_eq!(idx::read_images(&image_gz).unwrap(), images);
    let set = data::load_idx(&image_gz, &label_gz, 10).unwrap();
    assert_eq!((set.len(), set.width()), (3, 10));
    assert_eq!(set.inputs()[29], 29.0 / 255.0);
}

#[test]
fn bad_idx_files_are_clear_errors() {
    let header = |magic: u32, sizes: &[u32]| {
        let mut bytes = magic.to_be_bytes().to_vec();
        sizes.iter().for_each(|s| bytes.extend_from_slice(&s.to_be_bytes()));
        bytes
    };
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        ("wrong-magic", header(0x0000_0801, &[1, 2, 2]), "wrong magic number 0x00000801"),
        ("float-data", header(0x0000_0D03, &[1, 2, 2]), "wrong magic number"),
        ("short-header", header(0x0000_0803, &[1, 2]), "truncated in the header"),
        ("empty", Vec::new(), "truncated in the magic number"),
        (
            "truncated-pixels",
            [header(0x0000_0803, &[2, 2, 2]), vec![7; 5]].concat(),
            "truncated: the header promises 8",
        ),
        ("trailing-bytes", [header(0x0000_0803, &[1, 2, 2]), vec![7; 5]].concat(), "more data"),
        ("absurd-size", header(0x0000_0803, &[1, 70_000, 70_000]), "absurd image size"),
        ("zero-size", header(0x0000_0803, &[1, 0, 28]), "absurd image size"),
        ("absurd-count", header(0x0000_0803, &[u32::MAX, 28, 28]), "absurd item count"),
    ];
    for (name, bytes, expected) in cases {
        for compressed in [false, true] {
            let path = scratch(&format!("{name}{}", if compressed { ".gz" } else { "" }));
            std::fs::write(&path, if compressed { gzip(&bytes) } else { bytes.clone() }).unwrap();
            let problem = problem(idx::read_images(&path), &path);
            assert!(problem.contains(expected), "{name} (gz {compressed}): {problem}");
        }
    }
    let missing = scratch("does-not-exist");
    assert!(problem(idx::read_labels(&missing), &missing).contains("cannot open"));
    let corrupt_gzip = scratch("corrupt.gz");
    std::fs::write(&corrupt_gzip, [0x1f, 0x8b, 8, 0, 1, 2, 3, 4, 5, 6, 7]).unwrap();
    assert!(matches!(idx::read_labels(&corrupt_gzip), Err(Error::Data { .. })));
}

#[test]
fn mismatched_counts_and_bad_labels_are_errors_naming_the_label_file() {
    let images = idx::Images::new(2, 1, 1, vec![0, 255]).unwrap();
    let image_path = scratch("pair-images");
    idx::write_images(&image_path, &images).unwrap();
    let few = scratch("pair-labels-few");
    idx::write_labels(&few, &[1]).unwrap();
    assert!(problem(data::load_idx(&image_path, &few, 10), &few).contains("1 labels for the 2 images"));
    let out_of_range = scratch("pair-labels-range");
    idx::write_labels(&out_of_range, &[1, 10]).unwrap();
    assert!(
        problem(data::load_idx(&image_path, &out_of_range, 10), &out_of_range)
            .contains("label 10 at index 1")
    );
}

#[test]
fn writes_are_atomic_and_leave_no_temporary_file() {
    let folder = tempfile::tempdir().unwrap();
    let path = folder.path().join("atomic-labels");
    idx::write_labels(&path, &[1, 2, 3]).unwrap();
    // A write that cannot happen (the target is a directory) leaves the old data where it was.
    let dir = folder.path().join("a-directory");
    std::fs::create_dir_all(dir.join("inside")).unwrap();
    assert!(matches!(idx::write_labels(&dir, &[4]), Err(Error::Data { .. })));
    let mut names: Vec<_> =
        std::fs::read_dir(folder.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
    names.sort();
    assert_eq!(names, ["a-directory", "atomic-labels"], "the temporary file is cleaned up");
    assert_eq!(idx::read_labels(&path).unwrap(), [1, 2, 3]);
}

#[test]
fn a_folder_of_standard_mnist_files_loads_plain_or_gzip() {
    let dir = scratch("mnist-dir");
    std::fs::create_dir_all(&dir).unwrap();
    let images = idx::Images::new(2, 28, 28, vec![128; 2 * 784]).unwrap();
    idx::write_images(dir.join("train-images-idx3-ubyte"), &images).unwrap();
    idx::write_labels(dir.join("train-labels-idx1-ubyte"), &[3, 4]).unwrap();
    idx::write_images(dir.join("t10k-images-idx3-ubyte"), &images).unwrap();
    let labels = dir.join("t10k-labels-idx1-ubyte");
    idx::write_labels(&labels, &[5, 6]).unwrap();
    // One file compressed, as downloads often are.
    let bytes = std::fs::read(&labels).unwrap();
    std::fs::remove_file(&labels).unwrap();
    std::fs::write(dir.join("t10k-labels-idx1-ubyte.gz"), gzip(&bytes)).unwrap();
    let (train, test) = data::mnist_dir(&dir).unwrap();
    assert_eq!((train.labels(), test.labels(), train.width()), (Some(&[3, 4][..]), Some(&[5, 6][..]), 784));

    std::fs::remove_file(dir.join("train-images-idx3-ubyte")).unwrap();
    let err = data::mnist_dir(&dir).unwrap_err();
    assert!(err.to_string().contains("train-images-idx3-ubyte: not found"), "{err}");
}

/// Shifted copies: each copy's image is the original moved by at most `max_shift` pixels
/// along each axis (every channel alike, zeros moving in), the labels follow, the same seed
/// gives the same copies, and a set without an image shape is refused.
#[test]
fn shifted_copies_move_each_image_within_the_bound() {
    use wgpu_nn::ImageShape;
    // Two 2-channel 5×5 images, each a distinct value at every pixel (so a shift is visible).
    let pixels: Vec<f32> = (0..2 * 2 * 25).map(|i| 1.0 + i as f32).collect();
    let set = Dataset::labelled(pixels.clone(), 50, vec![3, 7], 10)
        .unwrap()
        .with_image(ImageShape::new(2, 5, 5))
        .unwrap();
    let copies = set.with_shifted_copies(20, 1, 9).unwrap();
    assert_eq!(copies.len(), 2 * 21);
    assert_eq!(&copies.inputs()[..100], &pixels[..], "the originals come first");
    assert_eq!(copies.labels().unwrap(), [3, 7].repeat(21));
    assert_eq!(copies.image(), set.image());
    let mut moves = std::collections::HashSet::new();
    for (k, copy) in copies.inputs().chunks_exact(50).enumerate().skip(2) {
        let original = &pixels[(k % 2) * 50..][..50];
        let found = (-1..=1).flat_map(|dy| (-1..=1).map(move |dx| (dy, dx))).find(|&(dy, dx)| {
            (0..50).all(|i| {
                let (c, y, x) = (i / 25, (i % 25 / 5) as i32, (i % 5) as i32);
                let (fy, fx) = (y - dy, x - dx);
                let want = if (0..5).contains(&fy) && (0..5).contains(&fx) {
                    original[c * 25 + (fy * 5 + fx) as usize]
                } else {
                    0.0
                };
                copy[i] == want
            })
        });
        moves.insert(found.unwrap_or_else(|| panic!("copy {k} is no shift of at most 1 of its original")));
    }
    assert!(moves.len() > 4, "20 copies of each take several of the 9 shifts: {moves:?}");
    assert_eq!(set.with_shifted_copies(20, 1, 9).unwrap(), copies, "the same seed, the same shifts");
    assert_eq!(&set.with_shifted_copies(1, 0, 9).unwrap().inputs()[100..], &pixels[..], "no shift: copies");
    let rows = Dataset::labelled(pixels, 50, vec![3, 7], 10).unwrap();
    assert!(matches!(rows.with_shifted_copies(1, 1, 0), Err(Error::Shape { .. })));
}
