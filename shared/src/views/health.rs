//! The health check's answer.

use serde::Serialize;
use utoipa::ToSchema;

/// The service answers and its database is reachable.
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct Health {
    /// Always `ok` in a 200 answer.
    #[schema(example = "ok")]
    pub status: &'static str,
    /// `reachable`: a connection to the database answered a round trip.
    #[schema(example = "reachable")]
    pub database: &'static str,
}

impl Health {
    pub const OK: Health = Health {
        status: "ok",
        database: "reachable",
    };
}
