//! `rollout status|history|undo|restart` and `set image` for StatefulSets (the StatefulSet
//! issue builds them).

use super::args::{RolloutArgs, SetArgs};
use super::{CliError, Ctx, fail};

pub async fn rollout(_ctx: &Ctx, _a: RolloutArgs) -> Result<(), CliError> {
    Err(fail("rollout: not available in this build yet"))
}

pub async fn set(_ctx: &Ctx, _a: SetArgs) -> Result<(), CliError> {
    Err(fail("set image: not available in this build yet"))
}
