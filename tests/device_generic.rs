//! The code a run trains and evaluates with must not pin a tensor to the CPU: on a GPU
//! such a tensor fails the step or costs a host round trip per batch, and on a
//! CPU-only machine every test passes anyway. So the device-generic files may name the
//! CPU (`Device::Cpu`, or constructors that always make CPU tensors) only where a
//! comment within the three lines above says why the CPU is meant there: such a
//! comment names the CPU in words ("on the CPU", "CPU-side").

use std::path::{Path, PathBuf};

/// What a run's steps, evaluations and resume points run through.
const DEVICE_GENERIC: [&str; 5] = [
    "src/train",
    "src/models",
    "src/runner/trainer.rs",
    "src/runner/transfer.rs",
    "src/data/pixels.rs",
];

/// Ways to make a tensor on the CPU whatever device the run is on.
const CPU_PINNED: [&str; 6] = [
    "Device::Cpu",
    "Tensor::from(",
    "Tensor::from_slice(",
    "Tensor::f_from_slice(",
    "Tensor::from_data_size(",
    "Tensor::scalar_tensor(",
];

/// Lines of `source` outside its `#[cfg(test)]` module, numbered from 1.
fn lines_outside_tests(source: &str) -> Vec<(usize, &str)> {
    let mut in_tests = false;
    let mut kept = Vec::new();
    for (number, line) in source.lines().enumerate() {
        if line == "#[cfg(test)]" {
            in_tests = true;
        } else if in_tests && line == "}" {
            in_tests = false;
        } else if !in_tests {
            kept.push((number + 1, line));
        }
    }
    kept
}

/// `file:line: text` of each CPU-pinned tensor without a reason beside it.
fn unexplained_cpu_tensors(path: &Path, source: &str) -> Vec<String> {
    let lines = lines_outside_tests(source);
    let mut found = Vec::new();
    for (position, (number, line)) in lines.iter().enumerate() {
        let code = line.split("//").next().unwrap_or("");
        if !CPU_PINNED.iter().any(|pinned| code.contains(pinned)) {
            continue;
        }
        let explained = lines[position.saturating_sub(3)..=position]
            .iter()
            .filter_map(|(_, line)| line.split_once("//").map(|(_, comment)| comment))
            .any(|comment| comment.contains("CPU"));
        if !explained {
            found.push(format!("{}:{number}: {}", path.display(), line.trim()));
        }
    }
    found
}

fn rust_files(path: &Path) -> Vec<PathBuf> {
    if path.is_file() {
        return vec![path.to_path_buf()];
    }
    let mut files = Vec::new();
    for entry in std::fs::read_dir(path).unwrap() {
        files.extend(rust_files(&entry.unwrap().path()));
    }
    files.retain(|file| file.extension().is_some_and(|ext| ext == "rs"));
    files
}

#[test]
fn device_generic_code_pins_no_tensor_to_the_cpu_without_saying_why() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut found = Vec::new();
    let mut files = 0;
    for part in DEVICE_GENERIC {
        for file in rust_files(&root.join(part)) {
            files += 1;
            let source = std::fs::read_to_string(&file).unwrap();
            found.extend(unexplained_cpu_tensors(
                file.strip_prefix(root).unwrap(),
                &source,
            ));
        }
    }
    assert!(
        files > 10,
        "only {files} files checked: are the paths right?"
    );
    assert!(
        found.is_empty(),
        "tensors on the CPU in device-generic code: make them on the run's device \
         (`(kind, other.device())`), or say in a comment just above why the CPU is \
         meant there:\n{}",
        found.join("\n")
    );
}

#[test]
fn the_check_finds_a_cpu_tensor_and_accepts_a_reason() {
    let path = Path::new("src/train/step.rs");
    let unexplained = "fn f() {\n    let one = Tensor::from(1.0);\n}\n";
    assert_eq!(
        unexplained_cpu_tensors(path, unexplained),
        ["src/train/step.rs:2: let one = Tensor::from(1.0);"]
    );
    let explained = "fn f() {\n    // The step count is saved, so on the CPU.\n    \
                     let one = Tensor::from(1.0);\n}\n";
    assert!(unexplained_cpu_tensors(path, explained).is_empty());
    let in_a_comment = "// Tensor::from(1.0) would be on the CPU\nfn f() {}\n";
    assert!(unexplained_cpu_tensors(path, in_a_comment).is_empty());
    let in_tests = "#[cfg(test)]\nmod tests {\n    let x = Device::Cpu;\n}\n";
    assert!(unexplained_cpu_tensors(path, in_tests).is_empty());
}
