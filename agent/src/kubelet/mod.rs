//! The kubelet: runs the pods bound to this node through the runtime. Decisions are pure
//! ([`plan`], [`status`]) over what is [`observed`]; a worker task per pod carries them out.

pub mod images;
pub mod observed;
pub mod plan;
pub mod status;
