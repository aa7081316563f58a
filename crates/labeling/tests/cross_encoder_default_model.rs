//! The real default model (all-MiniLM-L6-v2) as a cross-encoder: it loads with a fresh head,
//! encodes pairs with BERT segments, labels pairs with valid probabilities, and its saved
//! labeler directory keeps Hugging Face encoder names. The models directory is
//! `$STRATA_MODELS` or `<repo>/models`.

use burn::tensor::Device;
use strata_data::{Catalog, Item, ItemTextConfig, Labeler};
use strata_labeling::cross_encoder::model::tokenize_pairs;
use strata_labeling::cross_encoder::store::{
    cross_encoder_from_encoder, load_cross_encoder, load_tokenizer, save_cross_encoder,
};
use strata_labeling::cross_encoder::{CrossEncoderLabeler, Pooling};
use strata_model::EncoderConfig;
use strata_model::bert::BertEncoder;

use strata_testkit::default_model;

#[test]
fn default_model_labels_pairs_as_a_cross_encoder() {
    let device = Device::flex();
    let loaded = cross_encoder_from_encoder(
        &default_model(),
        64,
        Pooling::Mean,
        0.1,
        ItemTextConfig::default(),
        7,
        &device,
    )
    .unwrap();
    assert_eq!(loaded.config.encoder.hidden_size, 384);
    assert_eq!(loaded.config.max_len, 64);
    let tokenizer = load_tokenizer(&loaded.tokenizer_path, &loaded.config).unwrap();

    // BERT pair encoding: [CLS] query [SEP] item [SEP], token types 0 then 1.
    let p = &tokenize_pairs(&tokenizer, &[("cordless drill", "DEWALT 20V drill")]).unwrap()[0];
    let (cls, sep) = (101, 102);
    assert_eq!(p.ids[0], cls);
    assert_eq!(p.ids.iter().filter(|&&t| t == sep).count(), 2);
    assert_eq!(*p.ids.last().unwrap(), sep);
    let first_sep = p.ids.iter().position(|&t| t == sep).unwrap();
    assert!(p.type_ids[..=first_sep].iter().all(|&t| t == 0));
    assert!(p.type_ids[first_sep + 1..].iter().all(|&t| t == 1));
    // Long pairs are truncated to max_len.
    let long = "very long item title ".repeat(40);
    let q = tokenize_pairs(&tokenizer, &[("drill", long.as_str())]).unwrap();
    assert_eq!(q[0].len(), 64);

    let mut items = vec![
        Item::new("1", "DEWALT 20-Volt MAX Cordless Drill"),
        Item::new("2", "Simpson Strong-Tie 12-Gauge Angle"),
        Item::new("3", "BEHR Premium Deck Stain"),
    ];
    items[0].taxonomy = vec!["Tools".into(), "Power Tools".into()];
    let catalog = Catalog::from_items(items).unwrap();
    let labeler = CrossEncoderLabeler::new(
        loaded.model.clone(),
        loaded.config.clone(),
        tokenizer.clone(),
        loaded.fingerprint,
        "minilm".into(),
        &catalog,
        device.clone(),
    );
    let pairs: Vec<(String, String)> = [
        ("cordless drill", "1"),
        ("angle bracket", "2"),
        ("deck stain", "3"),
        ("cordless drill", "3"),
    ]
    .iter()
    .map(|(q, i)| (q.to_string(), i.to_string()))
    .collect();
    let probs = labeler.probabilities(&pairs).unwrap();
    let labels = labeler.label(&pairs).unwrap();
    assert_eq!(probs.len(), 4);
    for (p, l) in probs.iter().zip(&labels) {
        assert!(
            p.iter().all(|x| x.is_finite() && (0.0..=1.0).contains(x)),
            "{p:?}"
        );
        assert!((p.iter().sum::<f32>() - 1.0).abs() < 1e-5, "{p:?}");
        let l = l.expect("a label for every pair") as usize;
        assert!(p.iter().all(|&x| x <= p[l]));
    }
    // The item text includes the taxonomy path, so it differs from the bare name.
    let bare = labeler
        .text_probabilities(&[("cordless drill", "DEWALT 20-Volt MAX Cordless Drill")])
        .unwrap();
    assert_ne!(bare[0], probs[0]);
    // Different pairs get different probabilities from the pretrained encoder.
    assert_ne!(probs[0], probs[3]);

    // Saved: the encoder keys are Hugging Face BERT names that a plain encoder loads, and the
    // labeler loads back with identical probabilities.
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("labeler");
    save_cross_encoder(&out, &loaded.model, &loaded.config, &tokenizer).unwrap();
    let cfg = EncoderConfig::from_hf_file(&default_model().join("config.json")).unwrap();
    let mut plain = BertEncoder::init(&cfg, &device);
    strata_model::store::load_hf_encoder(&mut plain, &out.join("model.safetensors")).unwrap();
    let again = CrossEncoderLabeler::load(&out, &catalog).unwrap();
    assert_eq!(again.probabilities(&pairs).unwrap(), probs);
    assert!(
        again
            .identity()
            .contains(&format!("{:016x}", again.fingerprint()))
    );
    assert_eq!(
        load_cross_encoder(&out, &device).unwrap().config,
        loaded.config
    );
}
