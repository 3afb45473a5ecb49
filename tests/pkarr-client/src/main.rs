//! The stock pkarr client, for the end-to-end tests: everything it does is
//! pkarr's `Client` against the relay URL it is given, with the system's
//! roots (`SSL_CERT_FILE` names the node's certificates).
//!
//! ```text
//! pkarr-client publish RELAY SECRET_HEX NAME TEXT   # TXT NAME → TEXT, signed by the key
//! pkarr-client resolve RELAY Z32                    # one line per TXT: NAME TEXT
//! ```

use std::process::ExitCode;

use pkarr::dns::rdata::RData;
use pkarr::{Client, Keypair, PublicKey, ResolvePolicy, SignedPacket};

#[tokio::main]
async fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.iter().map(String::as_str).collect::<Vec<_>>()[..] {
        ["publish", relay, secret, name, text] => publish(relay, secret, name, text).await,
        ["resolve", relay, key] => resolve(relay, key).await,
        _ => {
            Err("usage: pkarr-client publish RELAY SECRET_HEX NAME TEXT | resolve RELAY Z32".into())
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("pkarr-client: {error}");
            ExitCode::FAILURE
        }
    }
}

type Error = Box<dyn std::error::Error>;

fn client(relay: &str) -> Result<Client, Error> {
    let mut builder = Client::builder();
    builder.no_default_network().relays(&[relay])?;
    Ok(builder.build()?)
}

async fn publish(relay: &str, secret: &str, name: &str, text: &str) -> Result<(), Error> {
    let seed: [u8; 32] = decode_hex(secret).ok_or("SECRET_HEX: 64 hex digits")?;
    let keypair = Keypair::from_secret_key(&seed);
    let packet = SignedPacket::builder()
        .txt(name.try_into()?, text.try_into()?, 300)
        .sign(&keypair)?;
    client(relay)?.publish(&packet).await?;
    println!("{}", keypair.public_key());
    Ok(())
}

async fn resolve(relay: &str, key: &str) -> Result<(), Error> {
    let key = PublicKey::try_from(key)?;
    let packet = client(relay)?
        .resolve(&key, ResolvePolicy::NetworkOnly)
        .await?;
    for record in packet.all_resource_records() {
        if let RData::TXT(txt) = &record.rdata {
            let text = String::try_from(txt.clone())?;
            println!("{} {text}", record.name);
        }
    }
    Ok(())
}

fn decode_hex(text: &str) -> Option<[u8; 32]> {
    let mut bytes = [0u8; 32];
    if text.len() != 64 {
        return None;
    }
    for (index, byte) in bytes.iter_mut().enumerate() {
        *byte = u8::from_str_radix(text.get(index * 2..index * 2 + 2)?, 16).ok()?;
    }
    Some(bytes)
}
