//! Golden hashes of both GEMMs' outputs, recorded from the kernels as they were before the
//! shared blocked driver (commit `f748dd1`): every path must keep giving these bits.
//!
//! Shapes: every (M, N, K) of M ∈ {1, 13, 14, 15, 197, 1576}, N ∈ {1, 31, 32, 33, 768, 2304},
//! K ∈ {1, 2, 3, 767, 768, 1537, 3072} with `M·N·K ≤ 10⁸`, plus a few ViT-sized ones: strip
//! edges (M = 13, 14, 15), panel edges (N = 31, 32, 33), several row blocks (M = 1576), odd K
//! and one, two or more K blocks of either kernel (K = 767 … 3072). A's row stride is
//! `K + M mod 3`. A row's hash covers, in this order, C without bias or epilogue, with the
//! bias, with the epilogue, with both (1 thread); 2 threads must give the same bits.
use super::testing::{epilogue, rvec};
use super::{bf16, f32, gemm, Epilogue, GemmWeight};

const MS: [usize; 6] = [1, 13, 14, 15, 197, 1576];
const NS: [usize; 6] = [1, 31, 32, 33, 768, 2304];
const KS: [usize; 7] = [1, 2, 3, 767, 768, 1537, 3072];
/// Largest M·N·K of the full cross product.
const MAX_MNK: usize = 100_000_000;
/// Larger shapes on top of the cross product.
const LARGE: [(usize, usize, usize); 4] = [
    (197, 768, 768),
    (197, 2304, 767),
    (197, 768, 3072),
    (1576, 768, 1537),
];

/// The shapes, in the table's order.
fn shapes() -> Vec<(usize, usize, usize)> {
    let mut v = Vec::new();
    for m in MS {
        for n in NS {
            for k in KS {
                if m * n * k <= MAX_MNK {
                    v.push((m, n, k));
                }
            }
        }
    }
    v.extend(LARGE);
    v
}

/// FNV-1a over the bit patterns of `c` (little-endian bytes), continuing from `h`.
fn fnv(mut h: u64, c: &[f32]) -> u64 {
    for v in c {
        for b in v.to_bits().to_le_bytes() {
            h = (h ^ b as u64).wrapping_mul(0x0000_0100_0000_01b3);
        }
    }
    h
}

const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;

/// The hash of one shape on `isa`'s kernel for `w` (see the module docs).
fn hash<W: GemmWeight>(isa: W::Isa, w: &W, m: usize, n: usize, k: usize) -> u64 {
    let lda = k + m % 3;
    let a = rvec(m * lda, 11 + (m * 131 + k * 17 + n) as u64);
    let bias = rvec(n, 13 + n as u64);
    let epi: Epilogue = &epilogue;
    let mut h = FNV_OFFSET;
    for (with_bias, with_epi) in [(false, false), (true, false), (false, true), (true, true)] {
        let bias = with_bias.then_some(&bias[..]);
        let epi = with_epi.then_some(epi);
        let mut c1 = vec![f32::NAN; m * n];
        gemm(isa, &a, m, lda, w, bias, &mut c1, epi, 1).unwrap();
        let mut c2 = vec![f32::NAN; m * n];
        gemm(isa, &a, m, lda, w, bias, &mut c2, epi, 2).unwrap();
        let same = c1.iter().zip(&c2).all(|(x, y)| x.to_bits() == y.to_bits());
        assert!(same, "{}: 1 and 2 threads differ at {m}x{n}x{k}", W::NAME);
        h = fnv(h, &c1);
    }
    h
}

/// Both GEMMs on every path this CPU has give the recorded bits.
#[test]
fn outputs_match_golden_hashes() {
    let shapes = shapes();
    assert_eq!(shapes.len(), GOLDEN.len());
    let mut bad = Vec::new();
    for (&(m, n, k), &(gm, gn, gk, want)) in shapes.iter().zip(GOLDEN) {
        assert_eq!((m, n, k), (gm, gn, gk), "table order");
        let w = rvec(n * k, 17 + (m + k * 7 + n * 5) as u64);
        let pf = f32::PackedF32::pack(&w, n, k).unwrap();
        let pb = bf16::PackedBf16::pack(&w, n, k).unwrap();
        let mut got = [None; 3];
        got[0] = Some(hash(f32::Isa::Portable, &pf, m, n, k));
        #[cfg(target_arch = "x86_64")]
        if f32::has_avx512f() {
            got[1] = Some(hash(f32::Isa::Avx512, &pf, m, n, k));
        }
        #[cfg(target_arch = "x86_64")]
        if f32::has_avx2_fma() {
            // The AVX2 path does the AVX-512 path's FMAs in the same order: the same bits.
            let h = hash(f32::Isa::Avx2, &pf, m, n, k);
            if h != want_of(m, n, k)[1] {
                bad.push(format!(
                    "f32 avx2 {m}x{n}x{k}: got {h:#018x}, want the avx512 hash"
                ));
            }
        }
        got[2] = Some(hash(bf16::Isa::Portable, &pb, m, n, k));
        #[cfg(target_arch = "x86_64")]
        if bf16::has_avx512_bf16() {
            // The AVX512_BF16 path equals the portable one bit for bit.
            let h = hash(bf16::Isa::Avx512Bf16, &pb, m, n, k);
            assert_eq!(Some(h), got[2], "bf16 paths differ at {m}x{n}x{k}");
        }
        for (path, (g, w)) in ["f32 portable", "f32 avx512", "bf16"]
            .iter()
            .zip(got.iter().zip(want))
        {
            if let Some(g) = g {
                if *g != w {
                    bad.push(format!("{path} {m}x{n}x{k}: got {g:#018x}, want {w:#018x}"));
                }
            }
        }
    }
    assert!(bad.is_empty(), "outputs changed:\n{}", bad.join("\n"));
}

fn want_of(m: usize, n: usize, k: usize) -> [u64; 3] {
    GOLDEN
        .iter()
        .find(|g| (g.0, g.1, g.2) == (m, n, k))
        .map(|g| g.3)
        .expect("a golden shape")
}

/// Per shape (M, N, K): the hashes of the f32 portable path, the f32 AVX-512 path and the bf16
/// paths (AVX512_BF16 and portable agree).
#[rustfmt::skip]
const GOLDEN: &[(usize, usize, usize, [u64; 3])] = &[
    (1, 1, 1, [0x7fac3cb9fa215896, 0x7fac3cb9fa215896, 0xd9e68357f6d61ed6]),
    (1, 1, 2, [0xed386603d8142c81, 0xed386603d8142c81, 0x30e9b87ca119c07d]),
    (1, 1, 3, [0x31cadec2ae5e978a, 0x31cadec2ae5e978a, 0x934a75e3ee858f44]),
    (1, 1, 767, [0xa73e6ae347342ac5, 0xcdff43696186a965, 0x73408096c4d24f65]),
    (1, 1, 768, [0x3088c5c9899d3b3f, 0xb0e11ba85fa52d57, 0x61cadf0ca73baaf4]),
    (1, 1, 1537, [0x798b4ee3547ca645, 0x523a261324eab909, 0xb4b9e2270a8d47ed]),
    (1, 1, 3072, [0x4e1f139cd2eb36cd, 0xccfc0e2cddda39f5, 0x6f768d01a56821a5]),
    (1, 31, 1, [0xf72a8c9aac197d08, 0xf72a8c9aac197d08, 0x6dd34d9f5b10f421]),
    (1, 31, 2, [0x6d53cb47eaa396a3, 0xc950e64b2b07eb83, 0x0851238cd5c99bbc]),
    (1, 31, 3, [0xc19f2552b5b6a958, 0x3db79e65df644b92, 0x0c24ed2bca030b38]),
    (1, 31, 767, [0x8ced81e219b7d848, 0x2f2421e6bd64efc8, 0xb46824ad78e67ae7]),
    (1, 31, 768, [0x7257fd9e017ef9ad, 0x000810e29f4ee817, 0x69ebf0e93d66de24]),
    (1, 31, 1537, [0x7898a7ef6f4dddca, 0x63d06c311b6d0abe, 0xc844896b22b49b6c]),
    (1, 31, 3072, [0xa0835d8953f4cc3e, 0x94644abb2b1c8289, 0x0d6a521523c2ebb9]),
    (1, 32, 1, [0xa76b33fc39a86b56, 0xa76b33fc39a86b56, 0xd3cf7b519622b1ee]),
    (1, 32, 2, [0xef5a51a6fe53661c, 0x8a92f463c9411409, 0x180d7c43b7b3e7d5]),
    (1, 32, 3, [0x4e1da3d8c02548b8, 0x12709f371d59a715, 0xa7eb4bb516fb04f7]),
    (1, 32, 767, [0x4d29c754bcc6676b, 0x34c993093ae9dbc6, 0x6a9df1a51645b8a4]),
    (1, 32, 768, [0xec894668524d97b7, 0x9c66a04a4a120973, 0x8b9708d137779ccb]),
    (1, 32, 1537, [0x6769201660cadf9d, 0x79db9b0c689499c8, 0x2a1a115cf6281db6]),
    (1, 32, 3072, [0x192b0ac9db448b27, 0x9472317ff7d332b6, 0x5cbda95bd7abee80]),
    (1, 33, 1, [0xf368fe3e49ec54cc, 0xf368fe3e49ec54cc, 0x8be4c7cf1d745591]),
    (1, 33, 2, [0x54f6d9141c134d28, 0x0533954cb38319fb, 0x293fbaa97d490575]),
    (1, 33, 3, [0x8ddb6376acdab548, 0x8e1bd08114ab3037, 0x6103b9ed15a1ddf2]),
    (1, 33, 767, [0x710cf48169dd0300, 0x1a3dd0b51928d451, 0x26c2d0fb2e3d8d60]),
    (1, 33, 768, [0xfee3cb2c484f6ba0, 0x94d0350fd36b76c5, 0x32bb4042886ce6c4]),
    (1, 33, 1537, [0x44a6fe8209318398, 0xe7fce0db54591b2c, 0xb109a76e870a9b29]),
    (1, 33, 3072, [0x3478d7706110e40c, 0x4d92c9a39817b2ea, 0xa4405ed01b72eaf7]),
    (1, 768, 1, [0x03733aa2ed853499, 0x03733aa2ed853499, 0x747f4677d1b03101]),
    (1, 768, 2, [0x7e43993a78f4be56, 0x89b9dd5074a6d3e4, 0x0997a99a4a719854]),
    (1, 768, 3, [0x529ba1d40d582b9c, 0x5d6720c64126e1b4, 0xaa27721ecd36d8aa]),
    (1, 768, 767, [0xab3cefbd68331202, 0x0b789102b4c4bb3e, 0xdf085ff1c9538d82]),
    (1, 768, 768, [0xeb8c9328d123d1f9, 0xebf7adcca8b417d0, 0xf23a6a4e27b8886e]),
    (1, 768, 1537, [0x7f766f696022f5f0, 0xb715ea2885d6db39, 0x5a1c3894268b7345]),
    (1, 768, 3072, [0xd2372549fb2e4824, 0x928ce7cffe24451f, 0xea35768e3f0eb0cc]),
    (1, 2304, 1, [0xcd596fd5c0abf176, 0xcd596fd5c0abf176, 0x61d570ed4d8a37e7]),
    (1, 2304, 2, [0x59f6adda6a87c114, 0x254b15f1fd71c23e, 0x9160036e589d6ffd]),
    (1, 2304, 3, [0xe09e950ed58a6b97, 0x2c237f18633a1476, 0xbf97ee41ba0adf40]),
    (1, 2304, 767, [0x88778f002075dc48, 0x1ad6d2d880573b60, 0xd1cb33d5df42cae2]),
    (1, 2304, 768, [0xb6b7a04c9e4d47bd, 0x9fc1b76b5e919767, 0x9602d76351aa8cda]),
    (1, 2304, 1537, [0x7932d2b8a9f939ba, 0x2a2e8cb79f911679, 0x7f97c5770d60d6af]),
    (1, 2304, 3072, [0xa0ee62bfbbd86c01, 0x33b65b9d6f20c2e8, 0xf97286fbea0de29d]),
    (13, 1, 1, [0xab16fa5a8002fc2c, 0xab16fa5a8002fc2c, 0xad72b5b07c6a0f1e]),
    (13, 1, 2, [0x5fca9212943da07a, 0x2b905c6df66a2903, 0x56e6cf884716fa7a]),
    (13, 1, 3, [0x759d2acabc25907f, 0x90d4f010a2d09c03, 0x4f2886010c81a24e]),
    (13, 1, 767, [0x7254ef1d7eca5f74, 0x7e3cb41388fe40a4, 0x6d81675e823136b8]),
    (13, 1, 768, [0xae0e91e666b17158, 0x5e2117d14c07daab, 0x564b1603fd6d4934]),
    (13, 1, 1537, [0xcf6ca541e07e88c0, 0xc3597bdf035ff973, 0x4f62d38f1d8ce980]),
    (13, 1, 3072, [0x80e476d55fc72633, 0x6df3417e0bd59563, 0x3ee138762e9d4e68]),
    (13, 31, 1, [0xe0a85089bddda3ec, 0xe0a85089bddda3ec, 0x921f2f73c9b95d10]),
    (13, 31, 2, [0x3bb41f1d209573ca, 0x7155cd1e916b447b, 0x553912ab5b6b36c0]),
    (13, 31, 3, [0xe907a5354149171a, 0x525554fee63ffd50, 0x15172fc60ae53fc0]),
    (13, 31, 767, [0xc2d736500746ee34, 0x4ccfb2ed279e1953, 0x82a4acbd56abaeb6]),
    (13, 31, 768, [0x37851672cdf0aad6, 0x39fde142cb55afab, 0x20dee33c2ef8e5da]),
    (13, 31, 1537, [0x270ff8c10fdfa08d, 0xf522f3b3ebf706ed, 0x4e8eede07bad837c]),
    (13, 31, 3072, [0x51eb9efdedf0c076, 0x2c87cd31e8b54c70, 0xd9a1855e155ebe93]),
    (13, 32, 1, [0xc8ca36f9b6ae4c06, 0xc8ca36f9b6ae4c06, 0x1571c373005033db]),
    (13, 32, 2, [0x6913e410bc667b3d, 0xe9e46a2383cb181c, 0x789f571478729dcf]),
    (13, 32, 3, [0x6043a89f77df8026, 0x940f52e42f33e115, 0x3225c5e208932ffb]),
    (13, 32, 767, [0xfe033c561bb40964, 0xba0351cbaf8ce7d6, 0x1fc65ce30e013a44]),
    (13, 32, 768, [0x3e1f14a4cffb2ac8, 0x0594d36530249af0, 0x3521718cd832af4b]),
    (13, 32, 1537, [0xb572a06a9bb9eef6, 0xeec3da5d2abe17fd, 0x19fa0110a4ce53f3]),
    (13, 32, 3072, [0x7cf5ff795125f7fc, 0xd42d0e6e873c891e, 0xfacd2f7dbdefb0ca]),
    (13, 33, 1, [0xae2931064e470d58, 0xae2931064e470d58, 0x6138545dfb95f44f]),
    (13, 33, 2, [0x09ffef263f8323bd, 0xfa88402decca858d, 0xc4f860b7873ed2c3]),
    (13, 33, 3, [0x8500fafa8b6fa139, 0x159fb18f14707304, 0x6e65f83a3de8f261]),
    (13, 33, 767, [0xf2a33e517f44c62f, 0x0661f5928a2027f6, 0x4ecaf16f67d6d34b]),
    (13, 33, 768, [0x7c9418e4f69bd0f1, 0x5de1401a62e515d2, 0x25c6d6a3bffde794]),
    (13, 33, 1537, [0x0966db0cf22df221, 0xf350357933c945ec, 0xc3cf5e3ec09cc812]),
    (13, 33, 3072, [0xdc92065deb4a6b36, 0x1b8afcea3bb57e7e, 0x91052c8fd1e37ded]),
    (13, 768, 1, [0x458fd0ba69482fe8, 0x458fd0ba69482fe8, 0x53133fb185b7f0a4]),
    (13, 768, 2, [0xfef500b657a2bf4b, 0x9528e70e3f8a3216, 0x2012b604c916914f]),
    (13, 768, 3, [0x34f5bfe8e68f875b, 0x9659fd18a9e6ab53, 0xfa4466ad44714f09]),
    (13, 768, 767, [0x0b4be7cfe44457d5, 0x77af791bb5a6641a, 0xc8bee2c0f3efc9d7]),
    (13, 768, 768, [0x99d37f6466cb9fd6, 0xf22622ab931fdcc5, 0xfa2b22d6189baa2d]),
    (13, 768, 1537, [0x450859a322a1667a, 0xc585290192a104ce, 0xa252f8ef20c7447f]),
    (13, 768, 3072, [0x94889cd8a39c95ba, 0xc31a7913f7fb25d0, 0x3d20a34ed2bcdd0c]),
    (13, 2304, 1, [0xcc6d474ef2112ebe, 0xcc6d474ef2112ebe, 0xa65006f115554885]),
    (13, 2304, 2, [0x9ef7e8c84dc586bd, 0xad422747bf61cede, 0xceebc2675fa822d6]),
    (13, 2304, 3, [0xa55169e36f43e9f2, 0x9562680893042ea6, 0x149f592377085d90]),
    (13, 2304, 767, [0xba0b2dcd30be6c40, 0x126803ef6f5551c1, 0x71558d3656d53d4d]),
    (13, 2304, 768, [0x58aada8231bf52b9, 0xb3d17d8af54b5b47, 0x61f75b6f257241e7]),
    (13, 2304, 1537, [0x5044e6be73dfdffb, 0xf802d98b580d2ab9, 0xf046ca66cd08afcc]),
    (13, 2304, 3072, [0xf82c22266fe1e0c2, 0x63b51fa55996f054, 0x21d8bebc9785138a]),
    (14, 1, 1, [0x7283605998a0d685, 0x7283605998a0d685, 0xd107ec0f0429bcd1]),
    (14, 1, 2, [0x4430b3ff00defb4e, 0x0decda7e79fd929f, 0xa54cfd478544c194]),
    (14, 1, 3, [0x2dae8f7c9cfdd8cb, 0x260f1ff91f087b20, 0xb7cffea4dcb0de44]),
    (14, 1, 767, [0xc00facb613e58387, 0x73f907a5cd8f5c9d, 0xb50bb2514dc545ad]),
    (14, 1, 768, [0xc053c41e12aafc43, 0xf05220804d339f19, 0x2238bac03536665b]),
    (14, 1, 1537, [0xd1170815f7c896c9, 0x330fbc9743d2d022, 0x47a4c36c82994c63]),
    (14, 1, 3072, [0x4b730e3b8632aefe, 0xe8d6b06fdbb2f720, 0x70d29ed528701ff7]),
    (14, 31, 1, [0xeeb21d45d76712c0, 0xeeb21d45d76712c0, 0xaf2e0011e52d5aab]),
    (14, 31, 2, [0x1aba0471a42b594d, 0x90c89a226895ad40, 0x466fc8c94d456c1f]),
    (14, 31, 3, [0x34627788684a9c61, 0x46bfcb0d2d4bf23d, 0x1203dcd92b8cb7c9]),
    (14, 31, 767, [0x943f3d1fe6a38a1a, 0xece5b4cdfbd96e2a, 0x8815b5d8a59c003c]),
    (14, 31, 768, [0xb0c891c20f9ae3d3, 0x2c3d82e577fd708d, 0x659541fb0e346f14]),
    (14, 31, 1537, [0xc0b8daabc718f57d, 0x516da811f3ba3ee8, 0xd0834522a0b99b12]),
    (14, 31, 3072, [0x0703db7da4ecf2eb, 0x77fcb44072102540, 0x8b44fb80398c05f7]),
    (14, 32, 1, [0xaddff49102ddf8b6, 0xaddff49102ddf8b6, 0xe8d1287d55d9099e]),
    (14, 32, 2, [0xde3713abb09fda02, 0x9728e16fc7e88676, 0x9830fd8a00774f9e]),
    (14, 32, 3, [0x6d0d0649d02d2b7b, 0x4ad2bb89e382a0dd, 0x2184df4dafcc67b0]),
    (14, 32, 767, [0x32c2d7df09bbc136, 0xbed6698184a7cac5, 0xd588c5a778bee080]),
    (14, 32, 768, [0x69285439abdd45c6, 0xbb840688eab973c2, 0xb7241680f4ff6ff6]),
    (14, 32, 1537, [0xeb2bd4f8fb084977, 0xaa22c70c59b51779, 0xf37404791af25511]),
    (14, 32, 3072, [0x1af1b15aef155c45, 0x1912dbef40c61f9b, 0x8638b4ff53b11b3e]),
    (14, 33, 1, [0xc760931a1be5bed0, 0xc760931a1be5bed0, 0xace8a967bf97dd51]),
    (14, 33, 2, [0x5132b79bc29e1db7, 0x823f3528d64e56d6, 0x2e31571d53470090]),
    (14, 33, 3, [0x74b95609d3c9f43b, 0x87ea3ef3c8c0fb69, 0xb73ded23ed1ae704]),
    (14, 33, 767, [0x313ca68810bc4694, 0xbf04032e5e02cbab, 0x8ea64a5dd0e60014]),
    (14, 33, 768, [0xb0594864aafcb1a8, 0xc43a2d9e674785ca, 0xe380c6cc398fc38f]),
    (14, 33, 1537, [0x94b714f4e1d3bf49, 0x0ff87374c7160f41, 0x76c7d5a387d31b0e]),
    (14, 33, 3072, [0x6421eb7d467f8951, 0xaff5053f1a95692e, 0xf6ebb8ec82719020]),
    (14, 768, 1, [0xe0dd7e71c7dd3daf, 0xe0dd7e71c7dd3daf, 0x4b5c8aad26008ab6]),
    (14, 768, 2, [0x89b95f1e2dc2125d, 0x9dfed319faa8a828, 0x1aceddf785f22d44]),
    (14, 768, 3, [0x2d2e0aeebecba4de, 0xdcc8b550672942b6, 0xd4bbace1175cffce]),
    (14, 768, 767, [0xb96cfd20b17911cf, 0xd63a7204378ab663, 0xc8635bf26df12e68]),
    (14, 768, 768, [0x2f1307025ead6f27, 0xd7631b695d41b196, 0x58a327fd9ccb376d]),
    (14, 768, 1537, [0xbb6be16d8d19fb96, 0xd6b80bd9c1301085, 0x362c3a083dfcca9b]),
    (14, 768, 3072, [0x3cfee529b3f41c04, 0xf29f50cba2433100, 0x501e158e352b4388]),
    (14, 2304, 1, [0xff66e30826385c97, 0xff66e30826385c97, 0xfdfe8c2ad9cbe812]),
    (14, 2304, 2, [0x8e6ff6c1cc1df359, 0xd6dd5ad4cc77873c, 0xfcd34253592addb8]),
    (14, 2304, 3, [0xbcb3328cd900e549, 0x61195044167f6c8a, 0xdf128f2f16f432ed]),
    (14, 2304, 767, [0x5844f3ad8cbc1963, 0x6dddde0f90c5194d, 0x4731f4b215f8722b]),
    (14, 2304, 768, [0x38b16410bc43bcb8, 0xb304e13cb4b1a208, 0x3289ecd7df3d8e04]),
    (14, 2304, 1537, [0x407fed3c9dbcc209, 0x7824740e6acac39b, 0x76a9ef72b06ae49e]),
    (14, 2304, 3072, [0xc7514910ce194d5a, 0x70c21df758ef9f81, 0xd2d0ca601159c9b3]),
    (15, 1, 1, [0x3e12d418d52539b6, 0x3e12d418d52539b6, 0x72d6a3cca33dc80f]),
    (15, 1, 2, [0xc59ffcbf153f6414, 0x8c8bc2e2c58f7419, 0xf47db682e8a2b454]),
    (15, 1, 3, [0x6f1e1913d7177334, 0xa6f9960ee6092ab6, 0x79035b610c699ecd]),
    (15, 1, 767, [0xd92c3a878dc78efb, 0xc2882dc878782c2c, 0x0f3e209edbd2025a]),
    (15, 1, 768, [0x2e118a6b11a70e53, 0xb88e3fd4a7b345a6, 0x20b0fe091a849493]),
    (15, 1, 1537, [0xa40468ce296d28f4, 0x943341d48937127f, 0xa0043b2494a9417c]),
    (15, 1, 3072, [0xc8b7ccda3e474af9, 0x6ae546bd26381a85, 0xb4139f4225ff1cdd]),
    (15, 31, 1, [0x1b82fa083279a137, 0x1b82fa083279a137, 0xb0f3f7e08abce990]),
    (15, 31, 2, [0xede1c3d15a1f8b1a, 0x4989336c01d10e39, 0x92db08430cb1eeea]),
    (15, 31, 3, [0x77a9bf05ef5e6d1f, 0x1797663b60d6438b, 0x94f2bc0862922c82]),
    (15, 31, 767, [0x8c9d7c2e69a6b1af, 0xa893f49bbc388474, 0xc4dc7a226df87f3c]),
    (15, 31, 768, [0xf3f9a238edf43e6f, 0xaf31734cd5f17fb5, 0x925e5f9212073b3c]),
    (15, 31, 1537, [0xf03ecedf15a1c797, 0xf6e41acbba85ac07, 0xec8c385ccec2f373]),
    (15, 31, 3072, [0xd5338593af595128, 0x391435e6987ad571, 0x39fd15e66bacf651]),
    (15, 32, 1, [0xb01ec167fa6eb0f9, 0xb01ec167fa6eb0f9, 0x42a6b275f5671678]),
    (15, 32, 2, [0x7f2bebfe9978cfaf, 0x5b92c40de91f0f93, 0xdab1e4cebf7d57a4]),
    (15, 32, 3, [0x5a8cf19d6fb7d45b, 0xb005e110bc28c06c, 0x02081d6b9ca52e26]),
    (15, 32, 767, [0xc78be360954d4741, 0xa89d7cdd0c5f6ab7, 0xa72dfefaff8479bc]),
    (15, 32, 768, [0x17acc0642b9b4bcf, 0x88419be95a12ee68, 0xe63714f29b4d2e1f]),
    (15, 32, 1537, [0x8bdfdda94369a9e6, 0x4230da39359cf8bc, 0xb55ed2778240642e]),
    (15, 32, 3072, [0xf4fd6691093553d5, 0x6a8e6ca793658386, 0xeb860d7789b707bc]),
    (15, 33, 1, [0xb12b0bc07bbe31d1, 0xb12b0bc07bbe31d1, 0x1e6e85f8a01d800b]),
    (15, 33, 2, [0x9f61ce85b030e02c, 0x1cb938bd01483877, 0x318d7d2eab8d703e]),
    (15, 33, 3, [0xd2a50ba29d9b21e0, 0x6e12234961cc9a7d, 0x73c0452b5d379700]),
    (15, 33, 767, [0x5d7148cd804c5010, 0xe463d6be3aeba961, 0xd5f956b06eb6ea9d]),
    (15, 33, 768, [0x3f584327880c3f98, 0xa312b791c0e09a71, 0xa1e77b5b7ebec607]),
    (15, 33, 1537, [0x5b67ef4ce72648d2, 0x543a181eab5510a7, 0xfa9e3356236f8ab3]),
    (15, 33, 3072, [0xbcd14f554ffe71a0, 0xea2bda439e266209, 0xfd6f0f4d2140bc07]),
    (15, 768, 1, [0x46f379e82ab34589, 0x46f379e82ab34589, 0x1a881f0fc8bac8ce]),
    (15, 768, 2, [0xe9cefd0019f2c1cb, 0x81b0eb496ffe13f6, 0xae33500d61e2f1a5]),
    (15, 768, 3, [0x186976f4659cef48, 0xb29312579ec56c81, 0x3936cd1876d2e167]),
    (15, 768, 767, [0x2891843ca7fda2ab, 0x0bedcf21f96cfdfa, 0xdd09ef31896a5150]),
    (15, 768, 768, [0x85ef4443632ed771, 0x919f3c7e945cc4a5, 0x6c80882be54d7696]),
    (15, 768, 1537, [0x9b1341a5f678a091, 0x8321f05b5f02ab37, 0x85df527b9de7b8ea]),
    (15, 768, 3072, [0x5243fa146d0dd47b, 0xefcf48494b987cd6, 0xad2a471b82f9de45]),
    (15, 2304, 1, [0x1a0ebc11b203cfce, 0x1a0ebc11b203cfce, 0x3c609589b12c5b14]),
    (15, 2304, 2, [0xde77319d3af1953d, 0xa5beac677aed9e18, 0x7686ce2214f1bd17]),
    (15, 2304, 3, [0x286da1ec7faf31ac, 0x436ccfc741048f2e, 0xadaa51e42e10075b]),
    (15, 2304, 767, [0x5c5bd6c7471e1651, 0x68e1a5916342fc32, 0x9aad0a079b8079ce]),
    (15, 2304, 768, [0x41927149dd7b1ace, 0xbae85f42f51a6bc8, 0xcf9bc66178bedc05]),
    (15, 2304, 1537, [0x9adc0bf3ea38f21a, 0x3bf68c7507e7a4e0, 0xc2736f0637c99f28]),
    (197, 1, 1, [0x96dee4f8f09c9c52, 0x96dee4f8f09c9c52, 0x237d1fcc6a50bd81]),
    (197, 1, 2, [0x1b95075c046fe9e9, 0x4ceb2da59de124d6, 0xfef5563967b89892]),
    (197, 1, 3, [0xcf22e8b77a37faab, 0xbe453879f0895dc5, 0x78fececa18532107]),
    (197, 1, 767, [0xfe650df71a303e7b, 0xc052443ea7375a95, 0xfa3cddd47a14fbbd]),
    (197, 1, 768, [0xda0b9b11e2af3949, 0x38a52b60ef5a8995, 0xb545cf72ab7f014b]),
    (197, 1, 1537, [0x061a6c644f469a7d, 0x5db793c7fd7555a3, 0x7a24d203115785e9]),
    (197, 1, 3072, [0x33c79e1a018a957a, 0x8a1299f7d1520134, 0x63cc169d36a08bc4]),
    (197, 31, 1, [0xe4ed82f03148c7db, 0xe4ed82f03148c7db, 0x69d59f9946642554]),
    (197, 31, 2, [0x1af2bb6d3d9da6f0, 0x579ef2711f93f3b9, 0x7595ddaeb1fbfebf]),
    (197, 31, 3, [0x3dd08f8fe2ca4d8d, 0xa541a636e3ffb581, 0x38f031ea134dbd6f]),
    (197, 31, 767, [0x021ee6f63d2ed34e, 0x7c83310de8bf9fa4, 0xcb56fa67c8539637]),
    (197, 31, 768, [0x6376306646e11057, 0x7a5182e5b764080a, 0xb82f0ad20bb38c51]),
    (197, 31, 1537, [0x8eb1088624415530, 0x941d207a886d01ec, 0xa736ebd6599fe8cb]),
    (197, 31, 3072, [0xa490eda6845b7767, 0x92b47627e5c990dd, 0x67efc78b80ba19f3]),
    (197, 32, 1, [0x8503da93ad38066e, 0x8503da93ad38066e, 0x4d49c387a4ca4f21]),
    (197, 32, 2, [0xd9a24ef9f9169905, 0x88e96772e8c041fb, 0x279c4dc9e7b2a954]),
    (197, 32, 3, [0xe0e8e3b0c2fd10f1, 0x490499518359f2a7, 0x811d41601abde5f6]),
    (197, 32, 767, [0x677ca753a9eb50f8, 0xdf92e6547ae50dff, 0xf65e567edfe38be4]),
    (197, 32, 768, [0x160d8ab11339a6ac, 0x8add1a9a1e8f0ceb, 0x3bb8e865c0ce9190]),
    (197, 32, 1537, [0x3679afa618850885, 0xeb9d6d33b2180282, 0x7b255afa59a718a7]),
    (197, 32, 3072, [0x58e15d28c5b3027e, 0xfdc902521de3ca6b, 0x8b840deeb7c85b01]),
    (197, 33, 1, [0xaf487402d5994734, 0xaf487402d5994734, 0xb848d5ed27695515]),
    (197, 33, 2, [0x17a934598e513255, 0xcae108251491e0bb, 0x0c58ffbc295a58aa]),
    (197, 33, 3, [0xae237448c6ce0ab6, 0xc182393d0d260414, 0xf904014130ede8b6]),
    (197, 33, 767, [0x4150b498619558e8, 0xf6455deb2554659d, 0x5f44dcac71056f9b]),
    (197, 33, 768, [0xb0b69906174ed782, 0xe2992e427f3ca2f6, 0x25ee09a0fb8677c5]),
    (197, 33, 1537, [0xd1b5c2f6a0818f7e, 0x4a8947dacf08df26, 0x9f3768951e11d04b]),
    (197, 33, 3072, [0x4a1261ef3d823764, 0x34309a8b78764f40, 0x5e8dd6e13a99999d]),
    (197, 768, 1, [0xf5899f151f2940b0, 0xf5899f151f2940b0, 0x9da9364a1fc35c62]),
    (197, 768, 2, [0x581f36d7a2a9c7c9, 0x480888dc3a5def3c, 0x6a5bbacd32364a85]),
    (197, 768, 3, [0x2499c509eec792ce, 0xbfcd82afa9483c46, 0x2a1679ff810bb4bb]),
    (197, 2304, 1, [0xa7222ad4a272cb71, 0xa7222ad4a272cb71, 0xbc982643cb12777b]),
    (197, 2304, 2, [0x2f2d10a67cd743af, 0xfc6dc46a8f7ac675, 0xec725a26ef2d79a5]),
    (197, 2304, 3, [0x00ea03cbf7e38ad6, 0xdf9c2f964eaf7b8e, 0x21c174001c6c8602]),
    (1576, 1, 1, [0x7f8b9a2408912501, 0x7f8b9a2408912501, 0x9dbcea499c359ce5]),
    (1576, 1, 2, [0x0bcab8120791c102, 0x3f1f17cd68f90e42, 0x7b20a9a270aaab01]),
    (1576, 1, 3, [0x3f51556d20a37042, 0x17a84282fe03c768, 0xc16c323cfc15cfe0]),
    (1576, 1, 767, [0xfc428b90c7223b01, 0x79e85e016a352c63, 0xff593cf3041acbed]),
    (1576, 1, 768, [0xb87b70f710b2ee0e, 0x0e66b36bf33695f3, 0xded2006be1c03b20]),
    (1576, 1, 1537, [0x325e9bf348c2091a, 0x8c1b25cabc66520b, 0xafa731c065343422]),
    (1576, 1, 3072, [0x9ae90c57d62aec17, 0x81313057c2a3df0c, 0x9e6d1897dcebba12]),
    (1576, 31, 1, [0x364a2ea49378f599, 0x364a2ea49378f599, 0xc0da8d51d2380019]),
    (1576, 31, 2, [0x497007488a108fa3, 0x83b553a23138589b, 0x811d033d95a765d0]),
    (1576, 31, 3, [0xfb089c269fd0d8d9, 0x280258e4c3157ffd, 0x2a62846aade97e38]),
    (1576, 31, 767, [0x70d88931722e355d, 0x8862ce804ded142c, 0x66a3f710ba9e9d91]),
    (1576, 31, 768, [0x6c7afe5ee6525ef6, 0xa1ddaf15909e7e84, 0x109451ec7d406883]),
    (1576, 31, 1537, [0x9ce503f3c8dee469, 0xe89ff5063f74c93e, 0xd35133cf933d1099]),
    (1576, 32, 1, [0x60a2ff7136e4fe08, 0x60a2ff7136e4fe08, 0x35621106b223e5b4]),
    (1576, 32, 2, [0x4866267434cb3ec1, 0xbd2b232fd29ca305, 0x5751930173cc9bc4]),
    (1576, 32, 3, [0x38c1f76aed7466cc, 0xbf8718138afbc8e1, 0x09271428461f0fcf]),
    (1576, 32, 767, [0xeb26244d5c7a2667, 0xedce715b40e76081, 0xac0993cbb563fea3]),
    (1576, 32, 768, [0x6403b5a3d9b8274c, 0xe2b652dde37cf89c, 0xf72224ec6e7f7d7b]),
    (1576, 32, 1537, [0xbd11df7db9e3825d, 0x18de3377261b2f01, 0x09ed864779b04621]),
    (1576, 33, 1, [0x239eaf916bb99c19, 0x239eaf916bb99c19, 0xffe915f0d224f7d3]),
    (1576, 33, 2, [0x8220a8f5c60bf920, 0x64b6c915aea51587, 0x084cf53bf5852c3d]),
    (1576, 33, 3, [0x3c78a0cb4e69d656, 0xc641fbdcb881fcc3, 0xca1ceced4e43a41c]),
    (1576, 33, 767, [0xeb2ab9e7d6710e9d, 0x7a585fb8a13765ea, 0xd6818381f7b7ca33]),
    (1576, 33, 768, [0xb47621d4df0375fe, 0x87e7037b7f56fe8a, 0xd813cf5158a8b353]),
    (1576, 33, 1537, [0xa5f51d2ffec01e82, 0xa035e224c42b33ca, 0x89e3b00f3e8c71d1]),
    (1576, 768, 1, [0xb95a7e9aaf9636ad, 0xb95a7e9aaf9636ad, 0x03cb1574e37b7dfa]),
    (1576, 768, 2, [0x8237fa4fc708a051, 0xccdfef5bc67eee7c, 0x3a14bf29733629dd]),
    (1576, 768, 3, [0x4e06adc5411fb07c, 0xe63b1b429aa90160, 0xe7471eb83c1bc8ff]),
    (1576, 2304, 1, [0x4e7bbe535f770afe, 0x4e7bbe535f770afe, 0x194422bc5c5026aa]),
    (1576, 2304, 2, [0xef04ddc406ea6364, 0x651e62d6f6ee98b6, 0x37d57629c6143805]),
    (1576, 2304, 3, [0x478c08afa3dd872f, 0x5c1e0daf28db20ac, 0x3c31fc1b867cf419]),
    (197, 768, 768, [0xf4e143f31fa9ecee, 0x17e710eb34c53fd6, 0x524c4f8b890fdd01]),
    (197, 2304, 767, [0x2b4e04293f7abcac, 0xb5d1476e1e87d85d, 0x4c3db8101c21768e]),
    (197, 768, 3072, [0xc0c25384a82822ee, 0xbcf81abfeaf6ea4d, 0xfb5fa02020afed3a]),
    (1576, 768, 1537, [0x97ac9e13e25cc8d9, 0x3eb1e58e85df86f7, 0x006b37f10d3be14b]),
];
