//! The models a manifest can name, each an `nn::ModuleT` with its parameters under
//! named `VarStore` paths. The names (`hidden`, `output`, `conv`, `head`) make a
//! checkpoint readable and let a layer be frozen by its path prefix. `spec` holds the
//! manifest's description of a model and what every model shares.
//!
//! May import `random` only (dropout draws from the run's stream).

mod batch_norm;
mod cnn;
mod dense_cnn;
mod mlp;
mod resnet;
mod resnet9;
mod spec;

pub use cnn::ShallowCnn;
pub use dense_cnn::DenseCnn;
pub use mlp::Mlp;
pub use resnet::ResNet18;
pub use resnet9::ResNet9;
use spec::{conv, glorot_uniform};
pub use spec::{count_parameters, Activation, InputShape, InvalidModel, ModelSpec, Network, Pool};
