//! BIP39 mnemonics (English only) and the seed they stretch to.
//!
//! The word list, checksum and PBKDF2-HMAC-SHA512 stretching (2,048 rounds,
//! salt `"mnemonic" ‖ passphrase`, both NFKD-normalised) come from the
//! `bip39` crate of the rust-bitcoin project; this module narrows it to what
//! the vault's contract allows (English, 12–24 words) and wraps it so that
//! the phrase and the seed are zeroed on drop and never printed.

use std::fmt;

use rand_core::{OsRng, RngCore};
use zeroize::Zeroizing;

use crate::error::MnemonicError;

/// How many words a generated mnemonic has (and how much entropy: 11 bits a
/// word, less one checksum bit every three words).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WordCount {
    /// 12 words, 128 bits of entropy.
    Words12,
    /// 15 words, 160 bits.
    Words15,
    /// 18 words, 192 bits.
    Words18,
    /// 21 words, 224 bits.
    Words21,
    /// 24 words, 256 bits: what `alknet init` generates.
    Words24,
}

impl WordCount {
    /// The number of words.
    pub fn words(self) -> usize {
        match self {
            WordCount::Words12 => 12,
            WordCount::Words15 => 15,
            WordCount::Words18 => 18,
            WordCount::Words21 => 21,
            WordCount::Words24 => 24,
        }
    }

    /// The entropy in bytes.
    pub fn entropy_bytes(self) -> usize {
        self.words() / 3 * 4
    }
}

/// A BIP39 mnemonic in the English word list, checksum verified. The phrase
/// is zeroed on drop; `Debug` prints only the word count.
pub struct Mnemonic(bip39::Mnemonic);

impl Mnemonic {
    /// A fresh mnemonic from the operating system's CSPRNG.
    pub fn generate(count: WordCount) -> Result<Self, MnemonicError> {
        let mut entropy = Zeroizing::new([0u8; 32]);
        let entropy = &mut entropy[..count.entropy_bytes()];
        OsRng
            .try_fill_bytes(entropy)
            .map_err(|_| MnemonicError::Rng)?;
        Self::from_entropy(entropy)
    }

    /// The mnemonic encoding `entropy` (16, 20, 24, 28 or 32 bytes).
    pub fn from_entropy(entropy: &[u8]) -> Result<Self, MnemonicError> {
        if !matches!(entropy.len(), 16 | 20 | 24 | 28 | 32) {
            return Err(MnemonicError::EntropyLength(entropy.len()));
        }
        bip39::Mnemonic::from_entropy_in(bip39::Language::English, entropy)
            .map(Self)
            .map_err(map_error)
    }

    /// Parses a phrase: words separated by any whitespace, case-insensitive;
    /// the word count and checksum are verified.
    pub fn parse(phrase: &str) -> Result<Self, MnemonicError> {
        let normalised = Zeroizing::new(phrase.trim().to_lowercase());
        let words = normalised.split_whitespace().count();
        if !matches!(words, 12 | 15 | 18 | 21 | 24) {
            return Err(MnemonicError::WordCount(words));
        }
        bip39::Mnemonic::parse_in(bip39::Language::English, normalised.as_str())
            .map(Self)
            .map_err(map_error)
    }

    /// The phrase: the words separated by single spaces.
    pub fn phrase(&self) -> Zeroizing<String> {
        let mut phrase = Zeroizing::new(String::with_capacity(24 * 9));
        for (i, word) in self.0.words().enumerate() {
            if i > 0 {
                phrase.push(' ');
            }
            phrase.push_str(word);
        }
        phrase
    }

    /// The number of words.
    pub fn word_count(&self) -> usize {
        self.0.word_count()
    }

    /// The entropy the phrase encodes.
    pub fn entropy(&self) -> Zeroizing<Vec<u8>> {
        Zeroizing::new(self.0.to_entropy())
    }

    /// The 64-byte BIP39 seed: PBKDF2-HMAC-SHA512 of the phrase with salt
    /// `"mnemonic" ‖ passphrase` (NFKD), 2,048 rounds. The empty passphrase is
    /// the usual choice; a different passphrase gives an unrelated seed.
    pub fn to_seed(&self, passphrase: &str) -> Seed {
        Seed(Zeroizing::new(self.0.to_seed(passphrase)))
    }
}

impl fmt::Debug for Mnemonic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Mnemonic")
            .field("words", &self.word_count())
            .finish_non_exhaustive()
    }
}

fn map_error(error: bip39::Error) -> MnemonicError {
    match error {
        bip39::Error::BadWordCount(n) => MnemonicError::WordCount(n),
        bip39::Error::UnknownWord(i) => MnemonicError::UnknownWord { position: i + 1 },
        bip39::Error::BadEntropyBitCount(bits) => MnemonicError::EntropyLength(bits / 8),
        // English is the only language compiled in, so ambiguity cannot
        // happen; report it as the checksum-level failure it would be.
        bip39::Error::InvalidChecksum | bip39::Error::AmbiguousLanguages(_) => {
            MnemonicError::Checksum
        }
    }
}

/// A 64-byte BIP39 seed: the root every key is derived from. Zeroed on drop,
/// never printed.
pub struct Seed(Zeroizing<[u8; 64]>);

impl Seed {
    /// A seed from its bytes (e.g. a test vector's).
    pub fn from_bytes(bytes: [u8; 64]) -> Self {
        Self(Zeroizing::new(bytes))
    }

    /// The seed bytes. Treat them as the root secret they are.
    pub fn as_bytes(&self) -> &[u8; 64] {
        &self.0
    }
}

impl fmt::Debug for Seed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Seed(<redacted>)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ABOUT: &str = "abandon abandon abandon abandon abandon abandon abandon abandon abandon abandon abandon about";

    #[test]
    fn parsing_is_lenient_about_spacing_and_case_only() {
        let m = Mnemonic::parse(&format!(
            "  {}\n",
            ABOUT.replace(' ', " \t ").to_uppercase()
        ))
        .unwrap();
        assert_eq!(m.phrase().as_str(), ABOUT);
        assert_eq!(m.word_count(), 12);
        assert_eq!(m.entropy().as_slice(), &[0u8; 16]);
    }

    #[test]
    fn bad_phrases_say_what_is_wrong() {
        assert_eq!(
            Mnemonic::parse("abandon abandon").unwrap_err(),
            MnemonicError::WordCount(2)
        );
        assert_eq!(
            Mnemonic::parse(&ABOUT.replace("about", "abandon")).unwrap_err(),
            MnemonicError::Checksum
        );
        assert_eq!(
            Mnemonic::parse(&ABOUT.replacen("abandon", "abandonx", 1)).unwrap_err(),
            MnemonicError::UnknownWord { position: 1 }
        );
        // 13 words: a count BIP39 does not define.
        assert_eq!(
            Mnemonic::parse(&format!("{ABOUT} about")).unwrap_err(),
            MnemonicError::WordCount(13)
        );
        assert_eq!(
            Mnemonic::from_entropy(&[0; 15]).unwrap_err(),
            MnemonicError::EntropyLength(15)
        );
    }

    #[test]
    fn generated_mnemonics_have_the_requested_length_and_differ() {
        for count in [
            WordCount::Words12,
            WordCount::Words15,
            WordCount::Words18,
            WordCount::Words21,
            WordCount::Words24,
        ] {
            let a = Mnemonic::generate(count).unwrap();
            let b = Mnemonic::generate(count).unwrap();
            assert_eq!(a.word_count(), count.words());
            assert_eq!(a.entropy().len(), count.entropy_bytes());
            assert_ne!(a.phrase(), b.phrase());
            // A generated phrase parses back to itself.
            assert_eq!(Mnemonic::parse(&a.phrase()).unwrap().phrase(), a.phrase());
        }
    }

    #[test]
    fn debug_prints_no_words() {
        let m = Mnemonic::parse(ABOUT).unwrap();
        let printed = format!("{m:?} {:?}", m.to_seed(""));
        assert!(!printed.contains("abandon"), "{printed}");
        assert!(!printed.contains("5eb00bbd"), "{printed}");
    }
}
