//! The training machinery shared by pretraining and fine-tuning: one runner ([`run::run`]) over
//! a [`run::Task`].

pub mod checkpoint;
pub mod config;
pub mod ema;
pub mod fit;
pub mod nodes;
pub mod optim;
pub mod replicas;
pub mod report;
pub mod run;
