//! ResNet-18 for small images, as the MedMNIST benchmark adapts it to 28x28.

use super::batch_norm::{pytorch_batch_norm, ConvNorm};
use super::mlp::dense;
use super::network::{conv, InputShape, Network};
use tch::nn::{self, ModuleT};
use tch::Tensor;

/// ResNet-18 for small images, as the MedMNIST benchmark adapts it to 28x28: a 3x3
/// stem without the initial pooling, four stages of two basic blocks (64, 128, 256,
/// 512 channels, the last three halving the resolution), global average pooling and
/// a linear head. It is not the study's model, so its BatchNorm is PyTorch's, as in
/// the benchmark's code.
#[derive(Debug)]
pub struct ResNet18 {
    stem: ConvNorm<nn::BatchNorm>,
    blocks: Vec<BasicBlock>,
    head: nn::Linear,
}

#[derive(Debug)]
struct BasicBlock {
    first: ConvNorm<nn::BatchNorm>,
    second: ConvNorm<nn::BatchNorm>,
    /// 1x1 convolution and BN on the skip path when the shape changes.
    downsample: Option<ConvNorm<nn::BatchNorm>>,
}

impl BasicBlock {
    fn new(path: nn::Path, inputs: i64, outputs: i64, stride: i64) -> Self {
        let downsample = (stride != 1 || inputs != outputs).then(|| {
            ConvNorm::new(
                conv(&path / "down", inputs, outputs, 1, stride, false),
                pytorch_batch_norm(&path / "down_norm", outputs),
            )
        });
        BasicBlock {
            first: ConvNorm::new(
                conv(&path / "conv1", inputs, outputs, 3, stride, false),
                pytorch_batch_norm(&path / "norm1", outputs),
            ),
            second: ConvNorm::new(
                conv(&path / "conv2", outputs, outputs, 3, 1, false),
                pytorch_batch_norm(&path / "norm2", outputs),
            ),
            downsample,
        }
    }

    fn fold_batch_norms(&mut self) {
        self.first.fold();
        self.second.fold();
        if let Some(downsample) = &mut self.downsample {
            downsample.fold();
        }
    }
}

impl ModuleT for BasicBlock {
    fn forward_t(&self, xs: &Tensor, train: bool) -> Tensor {
        let ys = xs
            .apply_t(&self.first, train)
            .relu()
            .apply_t(&self.second, train);
        let skip = match &self.downsample {
            Some(downsample) => xs.apply_t(downsample, train),
            None => xs.shallow_clone(),
        };
        (ys + skip).relu()
    }
}

impl ResNet18 {
    pub fn new(path: &nn::Path, input: InputShape) -> Self {
        let mut blocks = Vec::new();
        let mut channels = 64;
        for (stage, (width, stride)) in [(64, 1), (128, 2), (256, 2), (512, 2)]
            .into_iter()
            .enumerate()
        {
            blocks.push(BasicBlock::new(
                path / format!("layer{stage}_0"),
                channels,
                width,
                stride,
            ));
            blocks.push(BasicBlock::new(
                path / format!("layer{stage}_1"),
                width,
                width,
                1,
            ));
            channels = width;
        }
        ResNet18 {
            stem: ConvNorm::new(
                conv(path / "stem", input.channels, 64, 3, 1, false),
                pytorch_batch_norm(path / "stem_norm", 64),
            ),
            blocks,
            head: dense(&(path / "head"), channels, input.classes),
        }
    }
}

impl ModuleT for ResNet18 {
    fn forward_t(&self, xs: &Tensor, train: bool) -> Tensor {
        let stem = xs.apply_t(&self.stem, train).relu();
        let features = self
            .blocks
            .iter()
            .fold(stem, |xs, block| block.forward_t(&xs, train));
        features
            .mean_dim([2i64, 3].as_slice(), false, None)
            .apply(&self.head)
    }
}

impl Network for ResNet18 {
    fn fold_batch_norms(&mut self) {
        self.stem.fold();
        self.blocks
            .iter_mut()
            .for_each(BasicBlock::fold_batch_norms);
    }
}
