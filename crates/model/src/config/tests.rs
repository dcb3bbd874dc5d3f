//! config.json as files spell it: every shipped file reads and writes back the same, old
//! files keep their defaults, wrong combinations are refused by name, and a Marian layout
//! round-trips while the default layout stays unwritten.

use super::*;

#[test]
fn every_shipped_config_reads_and_writes_back_the_same_fields() {
    let models = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../models");
    let mut seen = 0;
    for entry in std::fs::read_dir(&models).unwrap() {
        let path = entry.unwrap().path().join("config.json");
        if !path.exists() {
            continue;
        }
        let text = std::fs::read_to_string(&path).unwrap();
        let cfg = ModelConfig::load(&path).unwrap();
        let before: serde_json::Value = serde_json::from_str(&text).unwrap();
        let after = serde_json::to_value(&cfg).unwrap();
        assert_eq!(before, after, "{}", path.display());
        let options = path.with_file_name("training-options.json");
        if let Ok(text) = std::fs::read_to_string(&options) {
            let o: crate::training::options::TrainOptions = serde_json::from_str(&text).unwrap();
            assert_eq!(o.architecture, cfg.architecture, "{}", options.display());
        }
        seen += 1;
    }
    assert!(seen >= 6, "found {seen} shipped models");
}

#[test]
fn a_marian_layout_is_written_and_read_back_and_pre_norm_stays_unwritten() {
    let t = TransformerConfig {
        layout: TransformerLayout::Marian,
        activation: Activation::Swish,
        ..TransformerConfig::new(2, 2, 8)
    };
    let fields = ArchitectureFields::from(Architecture::Transformer(t));
    let json = serde_json::to_value(&fields).unwrap();
    assert_eq!(json["layout"], "marian");
    assert_eq!(json["activation"], "swish");
    let back: ArchitectureFields = serde_json::from_value(json).unwrap();
    assert_eq!(
        Architecture::try_from(back).unwrap(),
        Architecture::Transformer(t)
    );
    let ours = serde_json::to_value(ArchitectureFields::from(Architecture::transformer()));
    let ours = ours.unwrap();
    assert!(ours.get("layout").is_none() && ours.get("activation").is_none());
    assert!(
        "post-norm"
            .parse::<TransformerLayout>()
            .unwrap_err()
            .to_string()
            .contains("pre-norm or marian")
    );
}

#[test]
fn old_files_and_their_defaults_still_read() {
    let old = r#"{"architecture": "gru-bahdanau", "source_lang": "en", "target_lang": "fr",
        "src_vocab_size": 10, "tgt_vocab_size": 10, "embed_dim": 8, "hidden_dim": 8,
        "attention_dim": 8, "readout_dim": 8, "max_len": 20,
        "source_tokenizer": "s.json", "target_tokenizer": "t.json"}"#;
    let cfg: ModelConfig = serde_json::from_str(old).unwrap();
    assert_eq!(cfg.architecture, Architecture::bahdanau());
    let written = serde_json::to_value(&cfg).unwrap();
    assert_eq!(written["architecture"], "gru");
    assert_eq!(written["attention"], "additive");
    assert_eq!(written["attention_training"], "soft");
}

#[test]
fn mismatched_or_unknown_architectures_are_refused_with_the_names_to_use() {
    let fields = |architecture: &str, attention: &str, training, layers| ArchitectureFields {
        architecture: architecture.into(),
        attention: attention.into(),
        attention_training: training,
        layers,
        heads: 2,
        ff_dim: 8,
        layout: TransformerLayout::PreNorm,
        activation: Activation::Relu,
    };
    let err = |f: ArchitectureFields| Architecture::try_from(f).unwrap_err().to_string();
    assert!(
        err(fields("gru", "cosine", AttentionTraining::Soft, 0))
            .contains("additive, general or dot")
    );
    assert!(err(fields("transformer", "", AttentionTraining::Hard, 2)).contains("GRU"));
    assert!(err(fields("transformer", "", AttentionTraining::Soft, 0)).contains("layers"));
    assert!(err(fields("lstm", "", AttentionTraining::Soft, 0)).contains("\"transformer\""));
    let t = Architecture::try_from(fields("transformer", "", AttentionTraining::Soft, 2)).unwrap();
    assert_eq!(t.attention_name(), "scaled-dot");
    assert_eq!(t.layers_heads(), (2, 2));
    let bad_training: Result<AttentionTraining> = "sparse".parse();
    assert!(
        bad_training
            .unwrap_err()
            .to_string()
            .contains("soft or hard")
    );
    for s in Scorer::ALL {
        assert_eq!(s.name().parse::<Scorer>().unwrap(), s);
        assert_eq!(serde_json::to_string(&s).unwrap(), format!("\"{s}\""));
    }
}
