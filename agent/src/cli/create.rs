//! `create job NAME --from=cronjob/NAME` (the Jobs issue builds it).

use super::args::CreateArgs;
use super::{CliError, Ctx, fail};

pub async fn create(_ctx: &Ctx, _a: CreateArgs) -> Result<(), CliError> {
    Err(fail("create job: not available in this build yet"))
}
