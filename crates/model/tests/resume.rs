//! A training run that stops and resumes makes exactly the updates of one that never stopped,
//! for every kind of model (data order, Gumbel noise and dropout are all seeded by step).
#![allow(clippy::unwrap_used)] // test helpers fail the test that calls them

use std::path::{Path, PathBuf};

use attnscope_model::config::{Architecture, AttentionTraining, Scorer, TransformerConfig};
use attnscope_model::training::options::TrainOptions;
use attnscope_model::training::train::{RunControl, TrainReport, train};

/// A small made-up English-French corpus: every subject, verb and object combined.
fn write_corpus(path: &Path) {
    let subjects = [
        ("I", "Je", "vois"),
        ("You", "Tu", "vois"),
        ("He", "Il", "voit"),
        ("She", "Elle", "voit"),
        ("We", "Nous", "voyons"),
    ];
    let objects = [
        ("the cat", "le chat"),
        ("the dog", "le chien"),
        ("the house", "la maison"),
        ("the tree", "l'arbre"),
        ("the car", "la voiture"),
        ("the bird", "l'oiseau"),
    ];
    let ends = [(".", "."), ("!", " !"), ("?", " ?")];
    let mut lines = Vec::new();
    for (s_en, s_fr, v_fr) in subjects {
        let v_en = if s_en == "He" || s_en == "She" {
            "sees"
        } else {
            "see"
        };
        for (o_en, o_fr) in objects {
            for (e_en, e_fr) in ends {
                lines.push(format!(
                    "{s_en} {v_en} {o_en}{e_en}\t{s_fr} {v_fr} {o_fr}{e_fr}"
                ));
            }
        }
    }
    std::fs::write(path, lines.join("\n") + "\n").unwrap();
}

fn options(name: &str, data: &Path, kind: &str) -> TrainOptions {
    let architecture = match kind {
        "transformer" => Architecture::Transformer(TransformerConfig::new(1, 2, 32)),
        "hard" => Architecture::gru(Scorer::Additive, AttentionTraining::Hard),
        scorer => Architecture::gru(scorer.parse().unwrap(), AttentionTraining::Soft),
    };
    let mut o = TrainOptions::new(architecture, name, data.to_path_buf(), "en", "fr");
    (o.epochs, o.batch_size, o.checkpoint_every, o.warmup_steps) = (3.0, 16, 4, 3);
    (o.src_vocab, o.tgt_vocab, o.embed_dim, o.hidden_dim) = (60, 60, 16, 16);
    (o.dev_sentences, o.test_sentences) = (5, 5);
    if kind == "transformer" {
        (o.dropout, o.lr) = (0.1, 1e-3);
    }
    o
}

fn control(resume: bool, stop_after: Option<usize>) -> RunControl {
    RunControl {
        resume,
        epochs: None,
        stop_after,
        hardware: "test".into(),
    }
}

/// A temporary folder with the corpus written in it, and its `runs` and `models` folders
/// (the folder lasts as long as the first value).
fn corpus_and_folders() -> (tempfile::TempDir, PathBuf, PathBuf, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("pairs.tsv");
    write_corpus(&data);
    let (runs, models) = (dir.path().join("runs"), dir.path().join("models"));
    (dir, data, runs, models)
}

/// Trains `o` until step `stop` (checking that nothing is exported yet), then resumes it to
/// the end.
fn stop_then_resume(o: &TrainOptions, runs: &Path, models: &Path, stop: usize) -> TrainReport {
    let stopped = train(
        o.clone(),
        runs,
        models,
        &control(false, Some(stop)),
        &mut |_| {},
    );
    assert!(
        stopped.unwrap().is_none(),
        "{}: should have stopped",
        o.name
    );
    assert!(
        !models.join(&o.name).exists(),
        "{}: exported too early",
        o.name
    );
    train(o.clone(), runs, models, &control(true, None), &mut |_| {})
        .unwrap()
        .expect("finished")
}

/// Trains `o` from the start to the end.
fn train_whole(o: TrainOptions, runs: &Path, models: &Path) -> TrainReport {
    train(o, runs, models, &control(false, None), &mut |_| {})
        .unwrap()
        .expect("finished")
}

#[test]
fn a_resumed_run_equals_an_uninterrupted_one() {
    let (_dir, data, runs, models) = corpus_and_folders();
    for kind in ["additive", "general", "hard", "transformer"] {
        let whole = format!("{kind}-whole");
        let parts = format!("{kind}-parts");
        let a = train_whole(options(&whole, &data, kind), &runs, &models);
        // Stop after 6 steps (between two checkpoints at 4 and 8), then resume.
        let b = stop_then_resume(&options(&parts, &data, kind), &runs, &models, 6);
        assert!(
            a.summary.steps > 8,
            "{kind}: too short to test: {}",
            a.summary.steps
        );
        assert_eq!(a.summary.steps, b.summary.steps);
        assert_eq!(
            a.summary.final_train_loss, b.summary.final_train_loss,
            "{kind}"
        );
        assert_eq!(a.summary.dev_loss, b.summary.dev_loss, "{kind}");
        let wa = std::fs::read(models.join(&whole).join("model.safetensors")).unwrap();
        let wb = std::fs::read(models.join(&parts).join("model.safetensors")).unwrap();
        assert!(
            wa == wb,
            "{kind}: resumed weights differ from the uninterrupted run's"
        );
        // A different seed really changes the run (the comparison above can fail).
        let mut other = options(&format!("{kind}-seed"), &data, kind);
        other.seed = 7;
        let c = train_whole(other, &runs, &models);
        assert_ne!(
            a.summary.final_train_loss, c.summary.final_train_loss,
            "{kind}"
        );
    }
}

#[test]
fn a_run_started_from_a_model_keeps_its_tokenizers_and_weights() {
    let (_dir, data, runs, models) = corpus_and_folders();
    for kind in ["additive", "transformer"] {
        let base = format!("{kind}-base");
        train(
            options(&base, &data, kind),
            &runs,
            &models,
            &control(false, None),
            &mut |_| {},
        )
        .unwrap()
        .expect("finished");
        // A fine-tune with a learning rate too small to move the weights: the result must
        // translate exactly as the model it started from (random weights would not).
        let tuned = format!("{kind}-tuned");
        let mut o = options(&tuned, &data, "general");
        (o.init_from, o.lr, o.epochs, o.dropout) = (Some(models.join(&base)), 1e-12, 0.5, 0.0);
        train_whole(o, &runs, &models);
        let read = |name: &str, file: &str| std::fs::read(models.join(name).join(file)).unwrap();
        for file in ["tokenizer.en.json", "tokenizer.fr.json"] {
            assert!(
                read(&base, file) == read(&tuned, file),
                "{kind}: {file} differs"
            );
        }
        let cfg = |name: &str| {
            attnscope_model::ModelConfig::load(&models.join(name).join("config.json")).unwrap()
        };
        assert_eq!(cfg(&base).architecture, cfg(&tuned).architecture, "{kind}");
        let (a, b) = (
            attnscope_model::Translator::load(&models.join(&base)).unwrap(),
            attnscope_model::Translator::load(&models.join(&tuned)).unwrap(),
        );
        for text in ["I see the cat.", "We see the bird?", "She sees the car!"] {
            let t =
                |m: &attnscope_model::Translator| m.translate_batch(&[text.to_owned()], 1).unwrap();
            assert_eq!(t(&a), t(&b), "{kind}: {text}");
        }
    }
    // Another source language is refused with the reason.
    let mut o = options("wrong", &data, "additive");
    (o.init_from, o.source_lang) = (Some(models.join("additive-base")), "de".into());
    let err = train(o, &runs, &models, &control(false, None), &mut |_| {}).unwrap_err();
    assert!(err.to_string().contains("same source language"), "{err}");
}

#[test]
fn a_run_into_another_language_takes_the_source_side_and_decoder_layers() {
    let (_dir, data, runs, models) = corpus_and_folders();
    let base_opts = options("base", &data, "transformer");
    train_whole(base_opts, &runs, &models);
    // The corpus's targets stand in for another language: what matters is which weights and
    // tokenizers the run starts from. A learning rate too small to move the weights keeps
    // the transferred ones as they were.
    let mut o = options("moved", &data, "additive");
    (o.init_from, o.target_lang) = (Some(models.join("base")), "de".into());
    (o.lr, o.epochs, o.dropout, o.tgt_vocab) = (1e-12, 0.5, 0.0, 50);
    train_whole(o, &runs, &models);
    let (base, moved) = (models.join("base"), models.join("moved"));
    let read = |dir: &Path, file: &str| std::fs::read(dir.join(file)).unwrap();
    assert!(read(&base, "tokenizer.en.json") == read(&moved, "tokenizer.en.json"));
    assert!(moved.join("tokenizer.de.json").is_file());
    let cfg = attnscope_model::ModelConfig::load(&moved.join("config.json")).unwrap();
    assert_eq!((cfg.target_lang.as_str(), cfg.tgt_vocab_size), ("de", 50));
    let base_cfg = attnscope_model::ModelConfig::load(&base.join("config.json")).unwrap();
    assert_eq!(cfg.architecture, base_cfg.architecture);
    let summary = cfg.training.unwrap();
    assert_eq!(summary.transferred_from.as_deref(), Some("en→fr"));
    let card = std::fs::read_to_string(moved.join("README.md")).unwrap();
    assert!(card.contains("by transfer from that en→fr model"), "{card}");
    let weights = |dir: &Path| {
        candle_core::safetensors::load(dir.join("model.safetensors"), &candle_core::Device::Cpu)
            .unwrap()
    };
    let (a, b) = (weights(&base), weights(&moved));
    let same = |name: &str| {
        let (x, y) = (&a[name], &b[name]);
        x.shape() == y.shape()
            && x.flatten_all().unwrap().to_vec1::<f32>().unwrap()
                == y.flatten_all().unwrap().to_vec1::<f32>().unwrap()
    };
    for name in [
        "encoder.embedding.weight",
        "encoder.layers.0.self_attn.q.weight",
        "decoder.layers.0.cross_attn.k.weight",
        "decoder.layers.0.ff.fc1.weight",
        "decoder.norm.weight",
    ] {
        assert!(same(name), "{name} was not taken from the starting model");
    }
    for name in ["decoder.embedding.weight", "decoder.output.weight"] {
        assert!(!same(name), "{name} belongs to the new target vocabulary");
        assert_eq!(b[name].dim(0).unwrap(), 50, "{name}");
    }
}

/// `average_last`: the shipped weights are the mean of the last checkpoints' weights (kept
/// as snapshots), the same after a stop and resume inside the averaged stretch, and the
/// summary names the steps and both dev losses.
#[test]
fn averaged_weights_are_the_mean_of_the_last_checkpoints_even_across_a_resume() {
    use candle_core::Device;
    let (_dir, data, runs, models) = corpus_and_folders();
    let averaged = |name: &str| {
        let mut o = options(name, &data, "additive");
        o.average_last = 3;
        o
    };
    let a = train_whole(averaged("whole"), &runs, &models);
    let steps = a.summary.steps;
    // Checkpoints every 4 steps and at the end: the last three.
    let want: Vec<usize> = vec![(steps - 1) / 4 * 4 - 4, (steps - 1) / 4 * 4, steps];
    assert_eq!(a.summary.averaged_steps, want);
    let before = a.summary.dev_loss_before_averaging.expect("averaged");
    assert_ne!(before, a.summary.dev_loss);

    let snapshots: Vec<_> = want
        .iter()
        .map(|s| runs.join(format!("whole/snapshots/step-{s:08}.safetensors")))
        .collect();
    assert_eq!(
        std::fs::read_dir(runs.join("whole/snapshots"))
            .unwrap()
            .count(),
        3,
        "older snapshots are removed"
    );
    let load = |p: &Path| candle_core::safetensors::load(p, &Device::Cpu).unwrap();
    let shipped = load(&models.join("whole/model.safetensors"));
    let parts: Vec<_> = snapshots.iter().map(|p| load(p)).collect();
    for (name, w) in &shipped {
        let sum = parts
            .iter()
            .map(|p| p[name].clone())
            .reduce(|x, y| (x + y).unwrap())
            .unwrap();
        let mean = (sum / 3.0).unwrap();
        let diff = (w - &mean)
            .unwrap()
            .abs()
            .unwrap()
            .max_all()
            .unwrap()
            .to_scalar::<f32>()
            .unwrap();
        assert!(diff < 1e-6, "{name}: {diff}");
    }
    // The mean is not the final weights (the comparison above could fail).
    assert!(
        shipped.iter().any(|(name, w)| {
            let d = (w - &parts[2][name])
                .unwrap()
                .abs()
                .unwrap()
                .max_all()
                .unwrap();
            d.to_scalar::<f32>().unwrap() > 1e-6
        }),
        "the averaged weights equal the final ones"
    );

    // Stopped between the first and second averaged checkpoints, then resumed.
    let b = stop_then_resume(&averaged("parts"), &runs, &models, want[0] + 2);
    assert_eq!(b.summary.averaged_steps, want);
    let read = |name: &str| std::fs::read(models.join(name).join("model.safetensors")).unwrap();
    assert!(read("whole") == read("parts"), "resumed averages differ");
    let card = std::fs::read_to_string(models.join("whole/README.md")).unwrap();
    assert!(card.contains("mean of the last 3 checkpoints"), "{card}");
    assert!(card.contains("--average-last 3"), "{card}");
}
