//! The models a manifest can name. Each is a struct implementing `nn::ModuleT` whose
//! parameters live under named `VarStore` paths (`hidden`, `output`, `conv`, `head`),
//! so a checkpoint is readable and a layer can be frozen by its path prefix. `spec`
//! holds the manifest's description of a model, `network` what every model shares.
//!
//! May import `random` only (dropout draws from the run's stream).

mod batch_norm;
mod cnn;
mod dense_cnn;
mod mlp;
mod network;
mod resnet;
mod resnet9;
mod spec;

pub use cnn::ShallowCnn;
pub use dense_cnn::DenseCnn;
pub use mlp::Mlp;
pub use network::{count_parameters, Activation, InputShape, Network, Pool};
pub use resnet::ResNet18;
pub use resnet9::ResNet9;
pub use spec::{InvalidModel, ModelSpec};
