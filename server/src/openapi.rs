//! `GET /api/openapi.json`: the OpenAPI 3.1 document of the API, generated from the handlers'
//! annotations and the wire types' schemas (utoipa), so it cannot drift from the code.

use attnscope_protocol as wire;
use axum::Json;
use utoipa::OpenApi;

#[derive(OpenApi)]
#[openapi(
    info(
        title = "attnscope",
        description = "Translate with attention models and stream every decoding step with the attention it used."
    ),
    paths(
        crate::routes::translate,
        crate::routes::list_models,
        crate::render::render,
        crate::routes::healthz,
        crate::routes::metrics,
    ),
    components(schemas(
        wire::TranslateRequest,
        wire::InterventionSpec,
        wire::TranslateResponse,
        wire::StartEvent,
        wire::StepEvent,
        wire::DoneEvent,
        wire::HeadsAttention,
        wire::PackedWeights,
        wire::HypothesisInfo,
        wire::SentenceInfo,
        wire::AttributionRow,
        wire::AgreementSummary,
        wire::Candidate,
        wire::AttentionScores,
        wire::WordAlignment,
        wire::WordLink,
        wire::ModelInfo,
        wire::RenderRequest,
        wire::ErrorBody,
    ))
)]
pub struct ApiDoc;

/// The document, as JSON.
pub async fn document() -> Json<utoipa::openapi::OpenApi> {
    Json(ApiDoc::openapi())
}
