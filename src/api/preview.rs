//! `GET /api/v1/route-preview`: route explain over HTTP. Answers from the published snapshot
//! through the same code path as the xml_curl endpoint ([`crate::xmlcurl::explain`]), scoped
//! like the rest of the API ([`crate::access::explain_for`]): a tenant admin explains its own
//! tenant's calls only, and may force only a carrier it can see.

use axum::Json;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::error::{ApiError, ErrorBody};
use super::extract::ValidQuery;
use crate::access::{ExplainSources, PreviewQuery, Principal, explain_for};
use crate::api::ApiState;
use crate::xmlcurl::explain::Explanation;

pub fn router() -> OpenApiRouter<ApiState> {
    OpenApiRouter::new().routes(routes!(route_preview))
}

#[utoipa::path(get, path = "/route-preview", tag = "route-preview", params(PreviewQuery),
    description = "Which carriers a destination will use and why, and the exact dialplan XML FreeSWITCH would receive.",
    responses((status = 200, body = Explanation), (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn route_preview(
    State(state): State<ApiState>,
    principal: Principal,
    ValidQuery(q): ValidQuery<PreviewQuery>,
) -> Result<Response, ApiError> {
    let published = state.published.load();
    let health = state.quality.view();
    let sources = ExplainSources {
        store: &state.store,
        live: state.esl.live(),
        published: &published,
        health: &health,
    };
    // Serialised inside, while the snapshot it borrows its route names from is held.
    Ok(explain_for(sources, &principal, q, |explanation| {
        Json(explanation).into_response()
    })
    .await?)
}
