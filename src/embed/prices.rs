//! What embedding costs: published list prices of well-known models, for
//! `plan`'s estimate (a price the user gives wins).

/// Published list prices (USD per million input tokens) of well-known
/// models: OpenAI's, and Bedrock's on-demand prices (us-east-1) for the
/// embedding models vecload speaks to, also behind inference profiles.
pub fn known_price(model: &str) -> Option<f64> {
    let m = model.rsplit('/').next().unwrap_or(model);
    let m = ["us.", "eu.", "apac.", "global."]
        .iter()
        .find_map(|p| m.strip_prefix(p))
        .unwrap_or(m);
    Some(match m {
        "text-embedding-3-small" => 0.02,
        "text-embedding-3-large" => 0.13,
        "text-embedding-ada-002" => 0.10,
        m if m.starts_with("amazon.titan-embed-text-v2") => 0.02,
        m if m.starts_with("amazon.titan-embed-text-v1") => 0.10,
        m if m.starts_with("cohere.embed-english-v3")
            || m.starts_with("cohere.embed-multilingual-v3") =>
        {
            0.10
        }
        m if m.starts_with("cohere.embed-v4") => 0.12,
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prices_of_known_models() {
        assert_eq!(known_price("text-embedding-3-small"), Some(0.02));
        assert_eq!(known_price("openai/text-embedding-3-large"), Some(0.13));
        assert_eq!(known_price("bge-m3"), None);
    }
}
