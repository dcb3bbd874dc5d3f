//! Pure helpers about the model list: the default model, descriptions, which model the URL
//! names. Unit-tested natively.

use attnscope_protocol::ModelInfo;

/// The name of the model marked `default` (the first one if several are, none if none is).
pub fn default_name(models: &[ModelInfo]) -> Option<&str> {
    models.iter().find(|m| m.default).map(|m| m.name.as_str())
}

/// The model to put in the URL: the chosen one, unless it is the default.
pub fn url_model(selected: Option<&str>, models: &[ModelInfo]) -> Option<String> {
    let selected = selected?;
    (default_name(models) != Some(selected)).then(|| selected.to_owned())
}

/// A count with a metric suffix: `950`, `12.3 k`, `3.2 M`.
pub fn human_count(n: usize) -> String {
    let x = n as f64;
    if n >= 1_000_000 {
        format!("{:.1} M", x / 1e6)
    } else if n >= 1_000 {
        format!("{:.1} k", x / 1e3)
    } else {
        n.to_string()
    }
}

/// One line about a model, e.g. `gru-bahdanau · additive attention · en→fr · 3.2 M parameters · BLEU 31.2`.
pub fn describe(m: &ModelInfo) -> String {
    let mut parts = vec![
        m.architecture.clone(),
        format!("{} attention", m.attention),
        format!("{}\u{2192}{}", m.source_lang, m.target_lang),
        format!("{} parameters", human_count(m.parameters)),
    ];
    if let Some(bleu) = m.bleu {
        parts.push(format!("BLEU {bleu:.1}"));
    }
    if let Some(chrf) = m.chrf {
        parts.push(format!("chrF {chrf:.1}"));
    }
    if let Some(aer) = m.aer {
        parts.push(format!("alignment AER {aer:.1}"));
    }
    parts.join(" \u{b7} ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn model(name: &str, default: bool) -> ModelInfo {
        ModelInfo {
            name: name.into(),
            architecture: "gru-bahdanau".into(),
            attention: "additive".into(),
            attention_training: "soft".into(),
            default_mode: "soft".into(),
            modes: vec!["soft".into()],
            layers: 0,
            heads: 0,
            context_dim: 0,
            source_lang: "en".into(),
            target_lang: "fr".into(),
            default,
            parameters: 3_210_000,
            bleu: Some(31.24),
            chrf: None,
            aer: None,
            alignment_method: None,
            error: None,
        }
    }

    #[test]
    fn default_and_url_model() {
        let models = [model("luong", false), model("bahdanau", true)];
        assert_eq!(default_name(&models), Some("bahdanau"));
        assert_eq!(default_name(&[]), None);
        assert_eq!(url_model(None, &models), None);
        assert_eq!(url_model(Some("bahdanau"), &models), None);
        assert_eq!(url_model(Some("luong"), &models).as_deref(), Some("luong"));
        assert_eq!(url_model(Some("luong"), &[]).as_deref(), Some("luong"));
    }

    #[test]
    fn descriptions() {
        assert_eq!(human_count(950), "950");
        assert_eq!(human_count(12_345), "12.3 k");
        assert_eq!(
            describe(&model("b", true)),
            "gru-bahdanau \u{b7} additive attention \u{b7} en\u{2192}fr \u{b7} 3.2 M parameters \u{b7} BLEU 31.2"
        );
        let measured = ModelInfo {
            aer: Some(47.08),
            ..model("b", true)
        };
        assert!(describe(&measured).ends_with("BLEU 31.2 \u{b7} alignment AER 47.1"));
    }
}
