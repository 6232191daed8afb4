//! Signing requests with AWS Signature Version 4, as the aws CLI and the SDKs sign them, for the
//! programs that call an ecsd node themselves: the agent, the bench, `ecsd`'s own admin commands
//! and the tests. The algorithm is aws-sigv4's; this module only feeds it a request and copies
//! its headers back.

use std::time::SystemTime;

/// An access key: what `ecsd keys create` prints, and what the aws CLI reads from
/// `AWS_ACCESS_KEY_ID` and `AWS_SECRET_ACCESS_KEY` or a shared-credentials file.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    pub access_key_id: String,
    pub secret_access_key: String,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("access_key_id", &self.access_key_id)
            .field("secret_access_key", &"<redacted>")
            .finish()
    }
}

impl Credentials {
    pub fn new(access_key_id: impl Into<String>, secret_access_key: impl Into<String>) -> Credentials {
        Credentials {
            access_key_id: access_key_id.into(),
            secret_access_key: secret_access_key.into(),
        }
    }

    /// The credentials the aws CLI would use, from the variables of `env`:
    /// `AWS_ACCESS_KEY_ID` and `AWS_SECRET_ACCESS_KEY`, else the profile `AWS_PROFILE` (default
    /// `default`) of the shared-credentials file `AWS_SHARED_CREDENTIALS_FILE` (default
    /// `~/.aws/credentials`). `None` when neither gives a key.
    pub fn from_env(env: impl Fn(&str) -> Option<String>) -> Option<Credentials> {
        if let (Some(id), Some(secret)) = (env("AWS_ACCESS_KEY_ID"), env("AWS_SECRET_ACCESS_KEY")) {
            return Some(Credentials::new(id, secret));
        }
        let file = env("AWS_SHARED_CREDENTIALS_FILE")
            .or_else(|| env("HOME").map(|home| format!("{home}/.aws/credentials")))?;
        let text = std::fs::read_to_string(file).ok()?;
        let profile = env("AWS_PROFILE").unwrap_or_else(|| "default".into());
        Credentials::from_profile(&text, &profile)
    }

    /// The key of `[profile]` in a shared-credentials file's text.
    pub fn from_profile(text: &str, profile: &str) -> Option<Credentials> {
        let mut in_profile = false;
        let (mut id, mut secret) = (None, None);
        for line in text.lines().map(str::trim) {
            if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
                in_profile = name.trim() == profile;
            } else if let (true, Some((key, value))) = (in_profile, line.split_once('=')) {
                match key.trim() {
                    "aws_access_key_id" => id = Some(value.trim().to_string()),
                    "aws_secret_access_key" => secret = Some(value.trim().to_string()),
                    _ => {}
                }
            }
        }
        Some(Credentials::new(id?, secret?))
    }

    /// A shared-credentials file with these credentials as `[profile]`.
    pub fn to_profile(&self, profile: &str) -> String {
        format!(
            "[{profile}]\naws_access_key_id = {}\naws_secret_access_key = {}\n",
            self.access_key_id, self.secret_access_key
        )
    }
}

/// Signs requests with one key for one region (the service is always `ecs`).
#[derive(Clone, Debug)]
pub struct Signer {
    credentials: Credentials,
    region: String,
}

/// The service name in every credential scope.
pub const SERVICE: &str = "ecs";

impl Signer {
    pub fn new(credentials: Credentials, region: impl Into<String>) -> Signer {
        Signer {
            credentials,
            region: region.into(),
        }
    }

    pub fn credentials(&self) -> &Credentials {
        &self.credentials
    }

    /// The headers that sign a request (`authorization`, `x-amz-date`), made at `time`. `url`
    /// must be absolute; `headers` are the request's own (the host comes from `url`).
    pub fn headers_at(
        &self,
        time: SystemTime,
        method: &str,
        url: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> Result<Vec<(&'static str, String)>, String> {
        use aws_sigv4::http_request::{sign, SignableBody, SignableRequest, SigningSettings};
        let uri: http::Uri = url.parse().map_err(|e| format!("{url}: {e}"))?;
        if uri.host().is_none() {
            return Err(format!("{url}: not an absolute URL"));
        }
        let identity = aws_credential_types::Credentials::new(
            &self.credentials.access_key_id,
            &self.credentials.secret_access_key,
            None,
            None,
            "ecsd",
        )
        .into();
        let params = aws_sigv4::sign::v4::SigningParams::builder()
            .identity(&identity)
            .region(&self.region)
            .name(SERVICE)
            .time(time)
            .settings(SigningSettings::default())
            .build()
            .map_err(|e| e.to_string())?
            .into();
        let request = SignableRequest::new(method, url, headers.iter().copied(), SignableBody::Bytes(body))
            .map_err(|e| e.to_string())?;
        let (instructions, _) = sign(request, &params).map_err(|e| e.to_string())?.into_parts();
        let (headers, _) = instructions.into_parts();
        Ok(headers.into_iter().map(|h| (h.name(), h.value().to_string())).collect())
    }

    /// Signs a built request now, in place (its body must be in memory).
    pub fn sign(&self, request: &mut reqwest::Request) -> Result<(), String> {
        self.sign_at(SystemTime::now(), request)
    }

    /// Signs a built request as if at `time` (tests sign with a skewed clock this way).
    pub fn sign_at(&self, time: SystemTime, request: &mut reqwest::Request) -> Result<(), String> {
        // The request is read in place; only the signing headers are new.
        let signed = {
            let body: &[u8] = match request.body() {
                None => &[],
                Some(body) => body.as_bytes().ok_or("a streamed body cannot be signed")?,
            };
            let own: Vec<(&str, &str)> = request
                .headers()
                .iter()
                .filter_map(|(k, v)| Some((k.as_str(), v.to_str().ok()?)))
                .collect();
            self.headers_at(time, request.method().as_str(), request.url().as_str(), &own, body)?
        };
        for (name, value) in signed {
            let value = reqwest::header::HeaderValue::from_str(&value).map_err(|e| e.to_string())?;
            request.headers_mut().insert(name, value);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_profile_is_read_from_a_shared_credentials_file() {
        let text = "[default]\naws_access_key_id = A\naws_secret_access_key = B\n\n[ecsd]\n\
                    aws_access_key_id=AKID\n aws_secret_access_key = SECRET \nregion = x\n";
        assert_eq!(
            Credentials::from_profile(text, "ecsd"),
            Some(Credentials::new("AKID", "SECRET"))
        );
        assert_eq!(
            Credentials::from_profile(text, "default"),
            Some(Credentials::new("A", "B"))
        );
        assert_eq!(Credentials::from_profile(text, "other"), None);
        let written = Credentials::new("K", "S").to_profile("p");
        assert_eq!(
            Credentials::from_profile(&written, "p"),
            Some(Credentials::new("K", "S"))
        );
    }

    #[test]
    fn signing_adds_an_authorization_scoped_to_the_region_and_ecs() {
        let signer = Signer::new(Credentials::new("AKIDEXAMPLE", "x".repeat(40)), "eu-west-1");
        let time = std::time::UNIX_EPOCH + std::time::Duration::from_secs(1_700_000_000);
        let headers = signer
            .headers_at(time, "POST", "http://127.0.0.1:8101/", &[("x-amz-target", "T")], b"{}")
            .unwrap();
        let auth = &headers.iter().find(|(n, _)| *n == "authorization").unwrap().1;
        assert!(auth.starts_with("AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20231114/eu-west-1/ecs/aws4_request"));
        assert!(auth.contains("SignedHeaders=host;x-amz-date;x-amz-target"), "{auth}");
        assert!(signer.headers_at(time, "POST", "/relative", &[], b"").is_err());
    }
}
