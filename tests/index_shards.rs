//! Sharded indexing: N shards embed disjoint parts of a folder into Parquet parts, which merge
//! into the index a single run builds (same rows, same search results); a killed shard
//! resumes; an HNSW graph beside the index answers like exact search on a small collection.
mod common;
use common::{bpe, tiny_clip};
use std::path::Path;
use tessera::models::LoadOptions;
use tessera::pipelines::ann::AnnOptions;
use tessera::pipelines::shards::{self, Shard};
use tessera::pipelines::{ClipEmbedder, Index};
use tessera::progress::Silent;

/// 14 images in two folders and one file that is not an image.
fn photos(dir: &Path) {
    for i in 0..14u32 {
        let sub = dir.join(if i % 2 == 0 { "even" } else { "odd" });
        std::fs::create_dir_all(&sub).unwrap();
        image::RgbImage::from_fn(20 + i, 30, |x, y| {
            image::Rgb([(x * 9 + i * 17) as u8, (y * 5) as u8, (i * 40) as u8])
        })
        .save(sub.join(format!("img{i:02}.png")))
        .unwrap();
    }
    std::fs::write(dir.join("odd/broken.png"), b"not a png").unwrap();
}

#[test]
fn sharded_parts_merge_into_the_index_one_run_builds() {
    let d = tempfile::tempdir().unwrap();
    let (model, folder) = (d.path().join("clip"), d.path().join("photos"));
    tiny_clip(&model);
    photos(&folder);
    let e = ClipEmbedder::from_pretrained(&model, &bpe(), &LoadOptions::default()).unwrap();
    let id = model.display().to_string();

    // The incremental single-file index, the reference.
    let single = d.path().join("single.safetensors");
    Index::update(&e, &id, &folder, &single, &Silent).unwrap();
    let single = Index::load(&single).unwrap();
    assert_eq!(single.manifest.entries.len(), 14);

    // Three shards, each on its own (as three machines would), then merged.
    let parts = d.path().join("parts");
    let mut embedded = 0;
    let mut skipped = 0;
    for i in 0..3 {
        let r = shards::embed_shard(
            &e,
            &id,
            &folder,
            &parts,
            Shard { index: i, count: 3 },
            4,
            &Silent,
        )
        .unwrap();
        assert_eq!(r.embedded + r.skipped.len() + r.other_shards, 15);
        embedded += r.embedded;
        skipped += r.skipped.len();
    }
    assert_eq!((embedded, skipped), (14, 1));
    let merged_path = d.path().join("merged.safetensors");
    let m = shards::merge(std::slice::from_ref(&parts), &merged_path, None).unwrap();
    assert_eq!((m.rows, m.duplicates), (14, 0));
    let merged = Index::load(&merged_path).unwrap();
    assert_eq!(merged.manifest.entries, single.manifest.entries);
    assert_eq!(merged.manifest.model, id);
    for (a, b) in merged.embeds.iter().zip(&single.embeds) {
        for (x, y) in a.iter().zip(b) {
            assert!((x - y).abs() < 1e-6);
        }
    }
    for q in ["a red photo", "green stripes", "a dark square"] {
        assert_eq!(
            merged.search(&e, q, 5).unwrap(),
            single.search(&e, q, 5).unwrap()
        );
    }

    // The parts are plain Parquet: path, sha256, size, mtime, embedding list<float>.
    let (pm, pf, rows) = shards::read_part(
        &std::fs::read_dir(&parts)
            .unwrap()
            .next()
            .unwrap()
            .unwrap()
            .path(),
    )
    .unwrap();
    assert_eq!((pm, pf), (id.clone(), folder.clone()));
    assert!(rows
        .iter()
        .all(|r| r.sha256.len() == 64 && r.embedding.len() == 16));

    // A shard killed after its first part resumes from it.
    let resumed = d.path().join("resumed");
    let all = Shard::ALL;
    let first = shards::embed_shard(&e, &id, &folder, &resumed, all, 4, &Silent).unwrap();
    assert_eq!(first.parts.len(), 4); // 14 rows, 4 per part
    for p in &first.parts[1..] {
        std::fs::remove_file(p).unwrap();
    }
    let again = shards::embed_shard(&e, &id, &folder, &resumed, all, 4, &Silent).unwrap();
    assert_eq!((again.reused, again.embedded), (4, 10));
    shards::merge(
        std::slice::from_ref(&resumed),
        &d.path().join("r.safetensors"),
        None,
    )
    .unwrap();
    assert_eq!(
        Index::load(&d.path().join("r.safetensors")).unwrap().embeds,
        merged.embeds
    );
    // Another model in the same directory is refused, not mixed in.
    let err =
        shards::embed_shard(&e, "other-model", &folder, &resumed, all, 4, &Silent).unwrap_err();
    assert!(err.to_string().contains("use another --out"), "{err}");
    let err = shards::merge(
        &[d.path().join("nothing")],
        &d.path().join("x.safetensors"),
        None,
    )
    .unwrap_err();
    assert!(err.to_string().contains("nothing"), "{err}");

    // HNSW beside the index: on a small collection it finds exactly what brute force finds,
    // and re-saving the index removes the now stale graph.
    merged
        .build_graph(&merged_path, &AnnOptions::default())
        .unwrap();
    let g = merged.load_graph(&merged_path).unwrap().expect("graph");
    for q in ["a red photo", "green stripes"] {
        let exact = merged.search(&e, q, 5).unwrap();
        let approx = merged.search_with(&e, q, 5, Some(&g)).unwrap();
        assert_eq!(
            approx.iter().map(|x| &x.0).collect::<Vec<_>>(),
            exact.iter().map(|x| &x.0).collect::<Vec<_>>()
        );
        for (a, b) in approx.iter().zip(&exact) {
            assert!((a.1 - b.1).abs() < 1e-5);
        }
    }
    shards::merge(&[parts], &merged_path, None).unwrap();
    assert!(merged.load_graph(&merged_path).unwrap().is_none());
}

#[test]
fn shard_specs_are_checked_and_split_the_paths() {
    assert_eq!(Shard::parse("2/5").unwrap(), Shard { index: 2, count: 5 });
    for bad in ["5/5", "1/0", "x/2", "3", "-1/2"] {
        assert!(Shard::parse(bad).is_err(), "{bad}");
    }
    let paths: Vec<String> = (0..3000)
        .map(|i| format!("dir{}/img{i}.jpg", i % 7))
        .collect();
    let mut counts = [0usize; 4];
    for p in &paths {
        let owners: Vec<usize> = (0..4)
            .filter(|&i| Shard { index: i, count: 4 }.owns(p))
            .collect();
        assert_eq!(owners.len(), 1, "{p}");
        counts[owners[0]] += 1;
    }
    // Balanced within a few percent.
    assert!(
        counts.iter().all(|&c| (650..=850).contains(&c)),
        "{counts:?}"
    );
}

#[test]
fn the_cli_shards_merges_and_searches() {
    let d = tempfile::tempdir().unwrap();
    let (model, folder) = (d.path().join("clip"), d.path().join("photos"));
    tiny_clip(&model);
    photos(&folder);
    let bin = env!("CARGO_BIN_EXE_tessera");
    let bpe_path = bpe();
    let run = |args: &[&std::ffi::OsStr]| {
        let o = std::process::Command::new(bin).args(args).output().unwrap();
        assert!(
            o.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        String::from_utf8(o.stdout).unwrap()
    };
    let parts = d.path().join("parts");
    for s in ["0/2", "1/2"] {
        run(&[
            "index".as_ref(),
            "--model".as_ref(),
            model.as_os_str(),
            folder.as_os_str(),
            "--out".as_ref(),
            parts.as_os_str(),
            "--shard".as_ref(),
            s.as_ref(),
            "--bpe".as_ref(),
            bpe_path.as_os_str(),
        ]);
    }
    let index = d.path().join("all.safetensors");
    run(&[
        "index".as_ref(),
        "merge".as_ref(),
        parts.as_os_str(),
        "--index".as_ref(),
        index.as_os_str(),
        "--hnsw".as_ref(),
    ]);
    assert!(index.with_extension("usearch").exists());
    let search = |extra: &str| {
        let mut args: Vec<&std::ffi::OsStr> = vec![
            "search".as_ref(),
            index.as_os_str(),
            "a red photo".as_ref(),
            "--json".as_ref(),
            "--bpe".as_ref(),
            bpe_path.as_os_str(),
            "-k".as_ref(),
            "3".as_ref(),
        ];
        if !extra.is_empty() {
            args.push(extra.as_ref());
        }
        let v: serde_json::Value = serde_json::from_str(&run(&args)).unwrap();
        v.as_array()
            .unwrap()
            .iter()
            .map(|h| h["path"].as_str().unwrap().to_string())
            .collect::<Vec<_>>()
    };
    let approx = search("");
    assert_eq!(approx.len(), 3);
    assert_eq!(approx, search("--exact"));
    let o = std::process::Command::new(bin)
        .args(["index", "--model"])
        .arg(&model)
        .arg(&folder)
        .args(["--shard", "3/2", "--out"])
        .arg(&parts)
        .output()
        .unwrap();
    assert!(!o.status.success());
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("--shard"),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
}
