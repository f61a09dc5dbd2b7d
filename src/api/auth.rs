//! Bearer-token authentication of API requests.

use poem::Request;
use poem_openapi::auth::Bearer;
use poem_openapi::SecurityScheme;

use crate::error::AppError;
use crate::service::auth::Principal;
use crate::state::AppState;

/// A JWT from `POST /api/user/login`, sent as `Authorization: Bearer <token>`.
#[derive(SecurityScheme)]
#[oai(ty = "bearer", bearer_format = "JWT", checker = "check_bearer")]
pub struct BearerAuth(pub Principal);

async fn check_bearer(req: &Request, bearer: Bearer) -> poem::Result<Principal> {
    let state = req.data::<AppState>().ok_or_else(|| AppError::internal(anyhow::anyhow!("state missing")))?;
    Ok(state.accounts.tokens().verify(&bearer.token).await?)
}

impl BearerAuth {
    pub fn user_id(&self) -> i64 {
        self.0.user_id
    }
}
