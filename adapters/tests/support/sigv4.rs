//! An independent AWS Signature Version 4 check, written from AWS's
//! specification ("Create a signed AWS API request", docs.aws.amazon.com/IAM)
//! with nothing but SHA-256: the mock SNS uses it to accept or refuse what the
//! adapter (which signs with aws-sigv4) sends, the way SNS would.
//! `verifier_agrees_with_the_aws_test_suite` pins it to AWS's published
//! vectors, so a bug here cannot make a wrong signature pass.

use sha2::{Digest, Sha256};

/// The parts of an `Authorization: AWS4-HMAC-SHA256 …` header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Authorization {
    pub access_key_id: String,
    /// `YYYYMMDD` of the credential scope.
    pub date: String,
    pub region: String,
    pub service: String,
    /// Lower-case, in the header's order.
    pub signed_headers: Vec<String>,
    pub signature: String,
}

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

pub fn sha256_hex(data: &[u8]) -> String {
    hex(&Sha256::digest(data))
}

/// HMAC-SHA256 (RFC 2104): SHA-256 has 64-byte blocks.
fn hmac(key: &[u8], data: &[u8]) -> Vec<u8> {
    let mut block = [0u8; 64];
    if key.len() > block.len() {
        block[..32].copy_from_slice(&Sha256::digest(key));
    } else {
        block[..key.len()].copy_from_slice(key);
    }
    let mut inner = Sha256::new();
    inner.update(block.map(|b| b ^ 0x36));
    inner.update(data);
    let inner = inner.finalize();
    let mut outer = Sha256::new();
    outer.update(block.map(|b| b ^ 0x5c));
    outer.update(inner);
    outer.finalize().to_vec()
}

pub fn parse_authorization(value: &str) -> Result<Authorization, String> {
    let rest = value
        .strip_prefix("AWS4-HMAC-SHA256 ")
        .ok_or_else(|| format!("not AWS4-HMAC-SHA256: {value}"))?;
    let mut credential = None;
    let mut signed = None;
    let mut signature = None;
    for part in rest.split(',') {
        let (k, v) = part
            .trim()
            .split_once('=')
            .ok_or_else(|| format!("bad component `{part}`"))?;
        match k {
            "Credential" => credential = Some(v),
            "SignedHeaders" => signed = Some(v),
            "Signature" => signature = Some(v),
            other => return Err(format!("unknown component `{other}`")),
        }
    }
    let credential = credential.ok_or("no Credential")?;
    let scope: Vec<&str> = credential.split('/').collect();
    let [akid, date, region, service, "aws4_request"] = scope[..] else {
        return Err(format!("bad credential scope `{credential}`"));
    };
    Ok(Authorization {
        access_key_id: akid.to_owned(),
        date: date.to_owned(),
        region: region.to_owned(),
        service: service.to_owned(),
        signed_headers: signed
            .ok_or("no SignedHeaders")?
            .split(';')
            .map(str::to_owned)
            .collect(),
        signature: signature.ok_or("no Signature")?.to_owned(),
    })
}

/// A request as the signer saw it. `header` looks a header up by its
/// lower-case name and gives all its values.
pub struct Signed<'a> {
    pub method: &'a str,
    /// Already URI-encoded, as sent.
    pub path: &'a str,
    /// Canonical query string (sorted, encoded); empty for none.
    pub query: &'a str,
    pub header: &'a dyn Fn(&str) -> Vec<String>,
    pub body: &'a [u8],
}

/// The signature AWS would compute for `request` under `auth`'s scope and
/// signed headers.
pub fn expected_signature(
    secret: &str,
    auth: &Authorization,
    request: &Signed<'_>,
) -> Result<String, String> {
    let mut canonical_headers = String::new();
    for name in &auth.signed_headers {
        let values = (request.header)(name);
        if values.is_empty() {
            return Err(format!("signed header `{name}` is missing"));
        }
        let values: Vec<String> = values
            .iter()
            .map(|v| v.split_whitespace().collect::<Vec<_>>().join(" "))
            .collect();
        canonical_headers.push_str(&format!("{name}:{}\n", values.join(",")));
    }
    let canonical_request = format!(
        "{}\n{}\n{}\n{}\n{}\n{}",
        request.method,
        request.path,
        request.query,
        canonical_headers,
        auth.signed_headers.join(";"),
        sha256_hex(request.body)
    );
    let amz_date = (request.header)("x-amz-date")
        .into_iter()
        .next()
        .ok_or("no x-amz-date")?;
    if !amz_date.starts_with(&auth.date) {
        return Err(format!(
            "x-amz-date {amz_date} is not on the credential's day {}",
            auth.date
        ));
    }
    let scope = format!(
        "{}/{}/{}/aws4_request",
        auth.date, auth.region, auth.service
    );
    let string_to_sign = format!(
        "AWS4-HMAC-SHA256\n{amz_date}\n{scope}\n{}",
        sha256_hex(canonical_request.as_bytes())
    );
    let key = hmac(format!("AWS4{secret}").as_bytes(), auth.date.as_bytes());
    let key = hmac(&key, auth.region.as_bytes());
    let key = hmac(&key, auth.service.as_bytes());
    let key = hmac(&key, b"aws4_request");
    Ok(hex(&hmac(&key, string_to_sign.as_bytes())))
}

/// Parse `authorization` and check its signature of `request` with `secret`.
pub fn verify(
    secret: &str,
    authorization: &str,
    request: &Signed<'_>,
) -> Result<Authorization, String> {
    let auth = parse_authorization(authorization)?;
    for required in ["host", "x-amz-date"] {
        if !auth.signed_headers.iter().any(|h| h == required) {
            return Err(format!("`{required}` is not signed"));
        }
    }
    let expected = expected_signature(secret, &auth, request)?;
    if expected != auth.signature {
        return Err(format!(
            "signature {} does not match the expected {expected}",
            auth.signature
        ));
    }
    Ok(auth)
}
