//! What each subcommand does, on top of the library. `main.rs` only parses and dispatches.

use std::path::Path;

use anyhow::{bail, ensure, Result};
use burn::prelude::*;
use burn::tensor::backend::AutodiffBackend;

use crate::cli::{BenchCommand, Command, FeaturesArgs, ReportCommand};
use eesmm::evaluate::{ClassificationReport, EvalConfig};
use eesmm::finetune::FinetuneConfig;
use eesmm::kernels::TrainBackend;
use eesmm::model::{info, load_model, SwinConfig};
use eesmm::pipeline::read_stage_file;
use eesmm::pretrain::PretrainConfig;
use eesmm::stages::{KnnStage, LinearProbeStage};
use eesmm::{bench, npy, with_backend};

pub fn run(command: Command) -> Result<()> {
    match command {
        Command::Info { model } => {
            print!("{}", info::summary(&SwinConfig::load(&model)?));
            Ok(())
        }
        Command::Features(args) => {
            with_backend!(args.device, |B, device| features::<B>(&args, &device))
        }
        Command::Pretrain {
            config,
            resume,
            nodes,
        } => {
            // Before the stage is read: its batch must split over the devices of every node.
            eesmm::train::nodes::start(&nodes.options())?;
            let stage: PretrainConfig = read_stage_file(&config)?;
            eesmm::interrupt::install()?;
            let run_dir = eesmm::pretrain::run::run(&stage, resume)?;
            println!("pretraining finished: {}", run_dir.display());
            Ok(())
        }
        Command::Finetune {
            config,
            resume,
            nodes,
        } => {
            // Before the stage is read: its batch must split over the devices of every node.
            eesmm::train::nodes::start(&nodes.options())?;
            let stage: FinetuneConfig = read_stage_file(&config)?;
            eesmm::interrupt::install()?;
            if let Some(report) = eesmm::finetune::run::run(&stage, resume)? {
                println!(
                    "held-out top-1 {:.2} %, top-5 {:.2} %",
                    100.0 * report.top1,
                    100.0 * report.top5
                );
            }
            println!(
                "fine-tuning finished: {}",
                stage.out_dir.join("classifier.safetensors").display()
            );
            Ok(())
        }
        Command::Eval { config } => {
            let stage: EvalConfig = read_stage_file(&config)?;
            print_report("eval", &stage.run_eval()?);
            Ok(())
        }
        Command::LinearProbe { config } => {
            let stage: LinearProbeStage = read_stage_file(&config)?;
            print_report("linear probe", &stage.0.run_linear_probe()?);
            Ok(())
        }
        Command::Knn { config } => {
            let stage: KnnStage = read_stage_file(&config)?;
            print_report("k-NN", &stage.0.run_knn()?);
            Ok(())
        }
        Command::Diff {
            actual,
            expected,
            tol,
        } => diff(&actual, &expected, tol),
        Command::Bench(BenchCommand::Encoder(args)) => bench::encoder(&args.options()),
        Command::Bench(BenchCommand::Pretrain(args)) => bench::pretrain(&args.options()),
        Command::Bench(BenchCommand::Gemm(args)) => bench::gemm(&args.options()),
        Command::Bench(BenchCommand::Onnx(args)) => eesmm::runtime::bench::run(&args.options()),
        Command::Report(ReportCommand::LabelEfficiency { results, plot }) => {
            eesmm::evaluate::label_efficiency::report(&results, &plot)
        }
        Command::Export(args) => eesmm::onnx::export(&args.options()),
        Command::Verify(args) => eesmm::runtime::verify::run(&args.options(), args.json),
        Command::Infer(args) => eesmm::runtime::infer::run(&args.options()),
        Command::Run(args) => {
            if !args.dry_run {
                eesmm::train::nodes::start(&args.nodes.options())?;
            }
            let pipeline = eesmm::pipeline::Pipeline::load(
                &args.pipeline,
                &args.set,
                &eesmm::stages::kinds(),
            )?;
            let options = eesmm::pipeline::RunOptions {
                from: args.from,
                only: args.only,
                force: args.force,
                dry_run: args.dry_run,
            };
            if !options.dry_run {
                eesmm::interrupt::install()?;
            }
            eesmm::pipeline::run(&pipeline, &options)
        }
    }
}

fn print_report(what: &str, report: &ClassificationReport) {
    println!(
        "{what}: {} images, top-1 {:.2} %, top-5 {:.2} %",
        report.images,
        100.0 * report.top1,
        100.0 * report.top5
    );
    for class in &report.per_class {
        println!(
            "  {:<24} {:>6.2} % of {}",
            class.class,
            100.0 * class.accuracy,
            class.images
        );
    }
}

/// Reads an NCHW float32 `.npy` and checks it against the model's input.
pub fn read_images<B: Backend>(
    path: &Path,
    config: &SwinConfig,
    device: &B::Device,
) -> Result<Tensor<B, 4>> {
    let array = npy::read(path)?;
    let expected = [config.in_chans, config.img_size, config.img_size];
    let shape = match array.shape[..] {
        [n, c, h, w] if [c, h, w] == expected => [n, c, h, w],
        _ => bail!(
            "{}: shape {:?} is not [N, {}, {}, {}] (in_chans, img_size, img_size of the model)",
            path.display(),
            array.shape,
            expected[0],
            expected[1],
            expected[2]
        ),
    };
    Ok(Tensor::from_data(
        TensorData::new(array.data, shape),
        device,
    ))
}

/// Writes a 2-D tensor as `.npy`.
pub fn write_matrix<B: Backend>(path: &Path, tensor: Tensor<B, 2>) -> Result<()> {
    let shape = tensor.dims();
    let data = tensor
        .into_data()
        .convert::<f32>()
        .to_vec::<f32>()
        .expect("float32 data");
    npy::write(path, &shape, &data)
}

fn features<B: TrainBackend>(args: &FeaturesArgs, device: &B::Device) -> Result<()> {
    type Inference<B> = <B as AutodiffBackend>::InnerBackend;
    let config = SwinConfig::load(&args.model)?;
    let (model, _) =
        load_model::<Inference<B>>(config.clone(), &args.weights, args.logits.is_some(), device)?;
    let images = read_images::<Inference<B>>(&args.input, &config, device)?;
    let pooled = model.forward(images); // [N, C_f]
    if let Some(path) = &args.logits {
        let logits = model.forward_head(pooled.clone());
        write_matrix(path, logits)?;
    }
    write_matrix(&args.out, pooled)
}

/// Prints the max absolute and relative difference of two arrays; fails above `tol` and on any
/// NaN or infinity.
fn diff(actual: &Path, expected: &Path, tol: f32) -> Result<()> {
    let (a, b) = (npy::read(actual)?, npy::read(expected)?);
    ensure!(
        a.shape == b.shape,
        "shapes differ: {:?} in {} vs {:?} in {}",
        a.shape,
        actual.display(),
        b.shape,
        expected.display()
    );
    let d = eesmm::compare::difference(&a.data, &b.data);
    println!(
        "shape {:?}  max abs diff {:.3e}  relative to max |expected| {:.3e}",
        a.shape, d.max_abs, d.relative
    );
    ensure!(
        d.within(tol),
        "max abs diff {:.3e} is above the tolerance {tol:.1e}{}",
        d.max_abs,
        if d.max_abs.is_infinite() {
            " (NaN or infinity in an array)"
        } else {
            ""
        }
    );
    Ok(())
}
