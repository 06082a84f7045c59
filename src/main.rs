use anyhow::{bail, Context, Result};
use cellnets::cli::list;
use cellnets::cluster::shard::Shard;
use cellnets::cluster::{interrupt, slurm, status};
use cellnets::inference::saved::{self, EvalSplit};
use cellnets::inference::{export, predict};
use cellnets::runner::bench;
use cellnets::study::manifest;
use cellnets::train::stop;
use cellnets::{data, report, runner};
use clap::{Args, Parser, Subcommand, ValueEnum};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;
use tch::Device;

/// Runs the neural-network study described by a YAML manifest: every stage, or the
/// ones named with `only`. Each run writes out/<stage>/<run>/epochs.csv (a row per
/// epoch) and best.safetensors (the best epoch's weights); each stage writes
/// out/<stage>/summary.csv (a row per finished run). Rerunning skips finished runs and
/// resumes interrupted ones.
#[derive(Parser)]
#[command(version, args_conflicts_with_subcommands = true)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    /// The manifest to run.
    #[arg(default_value = "experiments.yaml")]
    manifest: PathBuf,
    #[command(flatten)]
    options: Options,
    #[command(flatten)]
    sharing: SharingOptions,
}

#[derive(Subcommand)]
enum Command {
    /// Runs only the named stages.
    Only {
        /// Stages of the manifest, by name.
        #[arg(required = true)]
        stages: Vec<String>,
        /// The manifest that defines them.
        #[arg(long, default_value = "experiments.yaml")]
        manifest: PathBuf,
        #[command(flatten)]
        options: Options,
        #[command(flatten)]
        sharing: SharingOptions,
    },
    /// Writes a SLURM job array per stage under out/slurm/ (a task per unfinished run,
    /// each stage after the stages it starts from, then a job that writes the report)
    /// and, with --submit, submits them. Rerun it after failures: only what has not
    /// finished is submitted.
    Slurm {
        /// [MANIFEST] [STAGES...]: the manifest (a .yaml or .yml file, default
        /// experiments.yaml), then the stages to submit (default all).
        args: Vec<String>,
        /// Partition (queue) to run in.
        #[arg(long)]
        partition: Option<String>,
        /// Time limit of each task, as SLURM writes it: 30, 2:00:00, 1-00:00:00.
        #[arg(long)]
        time: Option<String>,
        /// CPUs per task; libtorch uses this many threads.
        #[arg(long, default_value_t = 1)]
        cpus_per_task: u32,
        /// Memory per node, as SLURM writes it: 8G.
        #[arg(long)]
        mem: Option<String>,
        /// GPUs per task (use --device cuda or auto with it).
        #[arg(long)]
        gpus_per_task: Option<u32>,
        /// At most this many tasks of a stage at once (the array's %K).
        #[arg(long)]
        throttle: Option<u32>,
        /// An extra #SBATCH line, e.g. --sbatch=--account=lab (repeatable).
        #[arg(long = "sbatch", allow_hyphen_values = true)]
        extra: Vec<String>,
        /// Seconds before the time limit at which SLURM warns a task (SIGUSR1), which
        /// then stops at the next batch and requeues itself.
        #[arg(long, default_value_t = 120)]
        signal_before: u32,
        /// How often a task may requeue itself.
        #[arg(long, default_value_t = 3)]
        max_requeues: u32,
        /// Seconds without a heartbeat after which a run's claim is taken over.
        #[arg(long, default_value_t = cellnets::cluster::claim::DEFAULT_TIMEOUT.as_secs())]
        claim_timeout: u64,
        /// Submit the scripts with sbatch and print the job ids.
        #[arg(long)]
        submit: bool,
        #[command(flatten)]
        options: Options,
    },
    /// Prints, per stage, the runs finished, training (by whom, at which epoch),
    /// waiting and diverged, from the files under out/.
    Status {
        /// The manifest whose runs to show.
        #[arg(default_value = "experiments.yaml")]
        manifest: PathBuf,
        /// Seconds without a heartbeat after which a claim counts as stale.
        #[arg(long, default_value_t = cellnets::cluster::claim::DEFAULT_TIMEOUT.as_secs())]
        claim_timeout: u64,
        #[command(flatten)]
        options: Options,
    },
    /// Times training epochs of the study's models on the real data (batch 32, SGD or
    /// another optimizer).
    Bench {
        /// Comma-separated: mlp256, mlp4096, cnn8x3, cnn64x9, deep.
        #[arg(
            long,
            value_delimiter = ',',
            default_value = "mlp256,mlp4096,cnn8x3,cnn64x9,deep"
        )]
        models: Vec<String>,
        /// Timed epochs per model, after one warm-up epoch.
        #[arg(long, default_value_t = 3)]
        epochs: usize,
        /// Times the textbook training step, without cellnets' fused SGD update.
        #[arg(long)]
        textbook: bool,
        /// sgd (the study's, 0.01), momentum (SGD 0.01, momentum 0.9) or adam (0.001).
        #[arg(long, default_value = "sgd")]
        optimizer: String,
        #[command(flatten)]
        options: Options,
    },
    /// Evaluates a saved run's best checkpoint on a data file: prints accuracy, balanced
    /// accuracy, macro F1, AUC and per-class scores, and writes them with the confusion
    /// matrix to <run>/eval/<file>-<split>/.
    Eval {
        /// A run folder (out/<stage>/<run>) or the best.safetensors inside one.
        run: PathBuf,
        /// An npz file of the same image size and classes [default: the run's own data
        /// file in --data-dir].
        #[arg(long)]
        data: Option<PathBuf>,
        /// Which images of the file to score.
        #[arg(long, value_enum, default_value_t = EvalSplit::Test)]
        split: EvalSplit,
        #[command(flatten)]
        options: Options,
    },
    /// Classifies image files (PNG, JPEG, TIFF, BMP, any size) with a saved run's best
    /// checkpoint. Each image is centre-cropped to a square, resized to the run's image
    /// size and converted to its channels, as MedMNIST prepared its images; the CSV has
    /// one row per file: the predicted class, every class's probability, or why the
    /// file could not be read.
    Predict {
        /// A run folder (out/<stage>/<run>) or the best.safetensors inside one.
        run: PathBuf,
        /// Image files, or folders searched for them (by ending, in every subfolder).
        #[arg(required = true)]
        images: Vec<PathBuf>,
        /// The CSV file to write.
        #[arg(long, default_value = "predictions.csv")]
        output: PathBuf,
        /// How many of the most probable classes to print per image.
        #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..))]
        top: u16,
        /// Where to run the model: auto takes CUDA when present.
        #[arg(long, value_enum, default_value_t = DeviceChoice::Auto)]
        device: DeviceChoice,
    },
    /// Writes a saved run's model as a TorchScript file (torch.jit.load in PyTorch): it
    /// takes float images (N, C, H, W) in [0, 1], prepared as `predict` prepares them,
    /// and returns class logits. ONNX is not available through libtorch; the error says
    /// how to convert the TorchScript file in Python.
    Export {
        /// A run folder (out/<stage>/<run>) or the best.safetensors inside one.
        run: PathBuf,
        #[arg(long, value_enum, default_value_t = export::Format::Torchscript)]
        format: export::Format,
        /// The file to write [default: <run>/model.pt].
        #[arg(long)]
        output: Option<PathBuf>,
    },
    /// Writes out/report.md: every stage's tables and figures beside the study's
    /// numbers, the data overview, test confusion matrices and error analysis.
    Report {
        /// The manifest whose outputs to report.
        #[arg(default_value = "experiments.yaml")]
        manifest: PathBuf,
        #[command(flatten)]
        options: Options,
    },
    /// Prints each stage's runs with their trainable and frozen parameter counts.
    List {
        /// The manifest to describe.
        #[arg(default_value = "experiments.yaml")]
        manifest: PathBuf,
        #[command(flatten)]
        options: Options,
    },
}

#[derive(Args, Clone)]
struct Options {
    /// Folder with the npz files [default: $CELLNETS_DATA_DIR, else data]
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Folder that receives every output.
    #[arg(long, default_value = "out")]
    out: PathBuf,
    /// Where to train: auto takes CUDA when present.
    #[arg(long, value_enum, default_value_t = DeviceChoice::Auto)]
    device: DeviceChoice,
    /// Retrain runs that already finished with the same settings instead of reusing them.
    #[arg(long)]
    fresh: bool,
    /// Train this many runs of a stage at once (threads sharing the device). Pays off
    /// on a GPU and for small models on many cores. Each run draws from its own seeds,
    /// so its numbers do not depend on what trains beside it.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..=256))]
    jobs: u16,
    /// libtorch threads per run [default: the cores, shared among --jobs]. Runs give
    /// the same numbers bit for bit on the CPU only with the same thread count.
    #[arg(long, value_parser = clap::value_parser!(u16).range(1..=1024))]
    threads: Option<u16>,
    /// Memory a data set's uint8 pixels may take (e.g. 512M, 2G); a larger set is read
    /// from an uncompressed copy on disk per batch [default: $CELLNETS_DATA_MEMORY, else
    /// half the memory available]
    #[arg(long, value_parser = data::parse_bytes)]
    data_memory: Option<u64>,
}

impl Command {
    /// The shared options, for the commands that read data sets.
    fn options(&self) -> Option<&Options> {
        match self {
            Command::Only { options, .. }
            | Command::Slurm { options, .. }
            | Command::Status { options, .. }
            | Command::Bench { options, .. }
            | Command::Eval { options, .. }
            | Command::Report { options, .. }
            | Command::List { options, .. } => Some(options),
            Command::Predict { .. } | Command::Export { .. } => None,
        }
    }
}

/// How a training process shares out/ with others (see the README's Cluster section).
#[derive(Args, Clone)]
struct SharingOptions {
    /// Take only share I of N of each stage's runs (run positions I, I+N, ...), for N
    /// processes on one out/ (e.g. one per GPU). Without it, a process takes every run
    /// that no other process holds.
    #[arg(long, default_value = "0/1")]
    shard: Shard,
    /// Seconds without a heartbeat after which another process's claim on a run is
    /// taken over (a process of this host that is gone is taken over at once).
    #[arg(long, default_value_t = cellnets::cluster::claim::DEFAULT_TIMEOUT.as_secs(), value_parser = clap::value_parser!(u64).range(1..))]
    claim_timeout: u64,
    /// Under SLURM: how often a task stopped by SIGUSR1 or SIGTERM requeues itself.
    #[arg(long, default_value_t = 3)]
    max_requeues: u32,
}

#[derive(Clone, Copy, ValueEnum)]
enum DeviceChoice {
    Auto,
    Cpu,
    Cuda,
}

fn main() -> ExitCode {
    // tch reports libtorch errors as panics, whose payload ends in a long C++ backtrace;
    // the run's error message says what failed, so the panic itself shows one line.
    std::panic::set_hook(Box::new(|info| {
        let location = info.location().map(|l| l.to_string()).unwrap_or_default();
        eprintln!(
            "panic at {location}: {}",
            cellnets::panic_summary(info.payload())
        );
    }));
    match run(Cli::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) if error.is::<Stopped>() => {
            eprintln!("{error}");
            ExitCode::from(interrupt::EXIT_CODE)
        }
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> Result<()> {
    let options = cli
        .command
        .as_ref()
        .map_or(Some(&cli.options), Command::options);
    if let Some(bytes) = options.and_then(|options| options.data_memory) {
        data::set_memory_budget(bytes);
    }
    match cli.command {
        None => train(&cli.manifest, &[], &cli.options, &cli.sharing),
        Some(Command::Only {
            stages,
            manifest,
            options,
            sharing,
        }) => train(&manifest, &stages, &options, &sharing),
        Some(Command::Slurm {
            args,
            partition,
            time,
            cpus_per_task,
            mem,
            gpus_per_task,
            throttle,
            extra,
            signal_before,
            max_requeues,
            claim_timeout,
            submit,
            options,
        }) => {
            let job = slurm::JobOptions {
                partition,
                time,
                cpus_per_task,
                mem,
                gpus_per_task,
                throttle,
                extra,
                signal_before,
                max_requeues,
                claim_timeout_s: claim_timeout,
            };
            submit_to_slurm(&args, &job, submit, &options)
        }
        Some(Command::Status {
            manifest,
            claim_timeout,
            options,
        }) => {
            let parsed = manifest::load(&manifest)?;
            let timeout = Duration::from_secs(claim_timeout);
            print!("{}", status::describe(&parsed, &options.out, timeout)?);
            Ok(())
        }
        Some(Command::Bench {
            models,
            epochs,
            textbook,
            optimizer,
            options,
        }) => {
            if epochs == 0 {
                bail!("--epochs must be at least 1");
            }
            let spec: manifest::DatasetSpec =
                serde_yaml::from_str("name: bloodmnist").expect("a valid dataset");
            let data_dir = data::data_dir(options.data_dir.as_deref());
            let data = data::open(&data_dir, &spec, device(options.device)?)?;
            if let Some(threads) = options.threads {
                tch::set_num_threads(threads.into());
            }
            let results = bench::bench(&models, epochs, &data, textbook, &optimizer)?;
            print!("{}", bench::table(&results));
            Ok(())
        }
        Some(Command::Eval {
            run,
            data,
            split,
            options,
        }) => {
            let saved = saved::SavedRun::open(&run)?;
            let spec = &saved.finished.plan.dataset;
            let device = device(options.device)?;
            let data = match data {
                Some(file) => {
                    let folder = file.parent().unwrap_or(std::path::Path::new("."));
                    data::load(&file, spec, folder, device)?
                }
                None => data::open(&data::data_dir(options.data_dir.as_deref()), spec, device)?,
            };
            print!("{}", saved::eval(&saved, &data, split, device)?);
            Ok(())
        }
        Some(Command::Predict {
            run,
            images,
            output,
            top,
            device: choice,
        }) => {
            let saved = saved::SavedRun::open(&run)?;
            let text = predict::run(&saved, &images, &output, top.into(), device(choice)?)?;
            print!("{text}");
            Ok(())
        }
        Some(Command::Export {
            run,
            format,
            output,
        }) => {
            let saved = saved::SavedRun::open(&run)?;
            let output = output.unwrap_or_else(|| saved.folder.dir().join("model.pt"));
            export::export(&saved, format, &output)?;
            println!("wrote {}", output.display());
            Ok(())
        }
        Some(Command::Report { manifest, options }) => {
            let parsed = manifest::load(&manifest)?;
            let settings = report::Settings {
                out_dir: options.out.clone(),
                data_dir: data::data_dir(options.data_dir.as_deref()),
                device: device(options.device)?,
            };
            let path = report::write(&parsed, &manifest, &settings)?;
            println!("wrote {}", path.display());
            Ok(())
        }
        Some(Command::List { manifest, options }) => {
            let manifest = manifest::load(&manifest)?;
            let data_dir = data::data_dir(options.data_dir.as_deref());
            print!("{}", list::describe(&manifest, &data_dir, &options.out)?);
            Ok(())
        }
    }
}

/// A training process stopped by a signal: its message says what became of it.
#[derive(Debug, thiserror::Error)]
#[error("stopped: {0}")]
struct Stopped(interrupt::Requeue);

fn train(
    manifest_path: &Path,
    only: &[String],
    options: &Options,
    sharing: &SharingOptions,
) -> Result<()> {
    let manifest = manifest::load(manifest_path)?;
    let settings = runner::Settings {
        out_dir: options.out.clone(),
        data_dir: data::data_dir(options.data_dir.as_deref()),
        device: device(options.device)?,
        fresh: options.fresh,
        jobs: options.jobs.into(),
        threads: options.threads.map(usize::from),
    };
    let shared = runner::Sharing {
        shard: sharing.shard,
        claim_timeout: Duration::from_secs(sharing.claim_timeout),
    };
    interrupt::install()?;
    match runner::run_shared(&manifest, only, &settings, &shared) {
        Ok(_) => {
            if let Some(peak) = peak_memory() {
                eprintln!("peak memory: {} MB", peak >> 20);
            }
            Ok(())
        }
        // The runs' claims are released by now: a requeued task may take them at once.
        Err(error) if stop::requested() && is_interrupted(&error) => {
            interrupt::ignore_further_signals();
            eprintln!("stopping on a signal: every committed epoch is kept");
            Err(Stopped(interrupt::requeue_self(sharing.max_requeues)).into())
        }
        Err(error) => Err(error),
    }
}

/// The process's peak resident memory in bytes (`VmHWM`), where Linux tells it.
fn peak_memory() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|line| line.starts_with("VmHWM:"))?;
    let kilobytes: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kilobytes << 10)
}

fn is_interrupted(error: &anyhow::Error) -> bool {
    error.chain().any(|cause| cause.is::<stop::Interrupted>())
}

/// `cellnets slurm`: writes the scripts, and submits them when asked.
fn submit_to_slurm(
    args: &[String],
    job: &slurm::JobOptions,
    submit: bool,
    options: &Options,
) -> Result<()> {
    let is_manifest = |arg: &String| arg.ends_with(".yaml") || arg.ends_with(".yml");
    let (manifest_path, stages) = match args.first() {
        Some(first) if is_manifest(first) => (PathBuf::from(first), &args[1..]),
        _ => (PathBuf::from("experiments.yaml"), args),
    };
    let manifest = manifest::load(&manifest_path)?;
    std::fs::create_dir_all(&options.out)?;
    let absolute = |path: &Path| {
        std::fs::canonicalize(path).with_context(|| format!("cannot find {}", path.display()))
    };
    let invocation = slurm::Invocation {
        binary: std::env::current_exe().context("cannot find the cellnets binary")?,
        manifest: absolute(&manifest_path)?,
        out_dir: absolute(&options.out)?,
        // The data folder may not exist yet: its files download on first use.
        data_dir: {
            let dir = data::data_dir(options.data_dir.as_deref());
            std::fs::canonicalize(&dir).or_else(|_| std::path::absolute(&dir))?
        },
        device: match options.device {
            DeviceChoice::Auto => "auto",
            DeviceChoice::Cpu => "cpu",
            DeviceChoice::Cuda => "cuda",
        }
        .to_string(),
        data_memory: options.data_memory,
    };
    let jobs = slurm::plan_jobs(&manifest, stages, &invocation.out_dir)?;
    let (report, written) = slurm::write_scripts(&jobs, job, &invocation)?;
    print!("{written}");
    if jobs.is_empty() {
        println!("every run has finished: only the report is left");
    }
    if submit {
        print!("{}", slurm::submit(&jobs, &report)?);
    }
    Ok(())
}

fn device(choice: DeviceChoice) -> Result<Device> {
    match choice {
        DeviceChoice::Auto => Ok(Device::cuda_if_available()),
        DeviceChoice::Cpu => Ok(Device::Cpu),
        DeviceChoice::Cuda if tch::Cuda::is_available() => Ok(Device::Cuda(0)),
        DeviceChoice::Cuda => {
            bail!("--device cuda: no CUDA device is visible to libtorch; use --device cpu or auto")
        }
    }
}
