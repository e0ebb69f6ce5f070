//! AWS: credentials (static keys, IRSA web identity, EKS Pod Identity, EC2 instance
//! metadata), STS `AssumeRoleWithWebIdentity`, SigV4 and ECR `GetAuthorizationToken`.

pub mod sigv4;
pub mod xml;

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::LazyLock;
use std::time::{Duration, SystemTime};

use base64::Engine as _;
use regex::Regex;
use serde::Deserialize;

use crate::config::{AwsEnvironment, Endpoints};
use crate::error::{Answer, Error, Provider, Result, Step};
use crate::http::{CallContext, HttpRequest, HttpResponse, Method};
use crate::login::RegistryLogin;
use crate::registry::{AWS_PUBLIC_REGION, RegistryInput};
use crate::secret::Secret;

/// The audience of the Kubernetes token exchanged at STS.
pub const STS_AUDIENCE: &str = "sts.amazonaws.com";
/// The ServiceAccount annotation naming the role.
pub const ROLE_ARN_ANNOTATION: &str = "eks.amazonaws.com/role-arn";
pub const ROLE_ARN_PATTERN: &str = r"^arn:aws[\w-]*:iam::[0-9]{1,30}:role/.{1,200}$";
const STS_VERSION: &str = "2011-06-15";
const ECR_TARGET: &str = "AmazonEC2ContainerRegistry_V20150921.GetAuthorizationToken";
const ECR_PUBLIC_TARGET: &str = "SpencerFrontendService.GetAuthorizationToken";
/// STS limits role session names to 64 characters.
const MAX_SESSION_NAME: usize = 64;
/// Token files are small; a bigger one is a misconfiguration.
const MAX_TOKEN_FILE_BYTES: u64 = 64 * 1024;

#[allow(clippy::expect_used)] // Constant pattern, covered by the tests.
static ROLE_ARN: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(ROLE_ARN_PATTERN).expect("role ARN pattern"));

/// AWS credentials. `Debug` hides the secret key and session token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AwsCredentials {
    pub access_key_id: String,
    pub secret_access_key: Secret,
    pub session_token: Option<Secret>,
    /// `None` for static keys, which do not expire.
    pub expires_at: Option<SystemTime>,
}

/// Who asks for the token.
#[derive(Debug, Clone)]
pub enum AwsIdentity {
    /// The controller's own identity (env keys, IRSA, Pod Identity, node role).
    Controller,
    /// A ServiceAccount token (TokenRequest, audience [`STS_AUDIENCE`]) exchanged for the
    /// role in its `eks.amazonaws.com/role-arn` annotation.
    ServiceAccount {
        role_arn: String,
        session_name: String,
        token: Secret,
    },
}

/// The role ARN from a ServiceAccount's annotations, checked as Flux checks it.
pub fn role_arn_from_annotations(annotations: &BTreeMap<String, String>) -> Result<String> {
    let value = annotations
        .get(ROLE_ARN_ANNOTATION)
        .map(String::as_str)
        .unwrap_or_default();
    if ROLE_ARN.is_match(value) {
        Ok(value.to_string())
    } else {
        Err(Error::config(
            Provider::Aws,
            Step::ControllerCredentials,
            "the service account's eks.amazonaws.com/role-arn annotation",
            format!(
                "invalid {ROLE_ARN_ANNOTATION} annotation: '{value}'. must match {ROLE_ARN_PATTERN}"
            ),
        ))
    }
}

/// Flux's session name for a ServiceAccount: `<sa>.<ns>.<region>.fluxcd.io`, cut to STS's
/// 64-character limit.
pub fn service_account_session_name(name: &str, namespace: &str, region: &str) -> String {
    let mut session = format!("{name}.{namespace}.{region}.fluxcd.io");
    session.truncate(MAX_SESSION_NAME);
    session
}

/// The DNS suffix of a region's partition.
pub fn partition_suffix(region: &str) -> &'static str {
    if region.starts_with("cn-") {
        "amazonaws.com.cn"
    } else if region.starts_with("us-isob-") {
        "sc2s.sgov.gov"
    } else if region.starts_with("us-isof-") {
        "csp.hci.ic.gov"
    } else if region.starts_with("us-iso-") {
        "c2s.ic.gov"
    } else if region.starts_with("eu-isoe-") {
        "cloud.adc-e.uk"
    } else if region.starts_with("eusc-") {
        "amazonaws.eu"
    } else {
        "amazonaws.com"
    }
}

fn endpoint(
    override_url: Option<&url::Url>,
    default: String,
    field: &'static str,
) -> Result<url::Url> {
    match override_url {
        Some(url) => Ok(url.clone()),
        None => url::Url::parse(&default).map_err(|err| {
            Error::config(
                Provider::Aws,
                Step::RegistryHost,
                field,
                format!("invalid endpoint {default}: {err}"),
            )
        }),
    }
}

/// `https://sts.<region>.<partition>/`, or `AWS_ENDPOINT_URL_STS`.
pub fn sts_endpoint(endpoints: &Endpoints, region: &str) -> Result<url::Url> {
    endpoint(
        endpoints.aws_sts.as_ref(),
        format!("https://sts.{region}.{}/", partition_suffix(region)),
        "the registry host's region",
    )
}

/// The ECR API for a registry: private in its region, or ECR Public in us-east-1.
pub fn ecr_endpoint(endpoints: &Endpoints, input: &RegistryInput) -> Result<url::Url> {
    match input {
        RegistryInput::AwsPublic => endpoint(
            endpoints.aws_ecr_public.as_ref(),
            format!("https://api.ecr-public.{AWS_PUBLIC_REGION}.amazonaws.com/"),
            "spec.image",
        ),
        RegistryInput::AwsPrivate { region } => endpoint(
            endpoints.aws_ecr.as_ref(),
            format!("https://api.ecr.{region}.{}/", partition_suffix(region)),
            "spec.image",
        ),
        _ => Err(Error::config(
            Provider::Aws,
            Step::RegistryHost,
            "spec.image",
            "not an ECR registry",
        )),
    }
}

// ---------------------------------------------------------------------------------------
// STS AssumeRoleWithWebIdentity
// ---------------------------------------------------------------------------------------

/// The unsigned form POST (no `DurationSeconds`: STS's one-hour default).
pub fn assume_role_with_web_identity_request(
    endpoint: &url::Url,
    role_arn: &str,
    session_name: &str,
    web_identity_token: &Secret,
) -> HttpRequest {
    HttpRequest::new(Method::Post, endpoint.clone()).form(&[
        ("Action", "AssumeRoleWithWebIdentity"),
        ("Version", STS_VERSION),
        ("RoleArn", role_arn),
        ("RoleSessionName", session_name),
        ("WebIdentityToken", web_identity_token.expose()),
    ])
}

/// Credentials from STS's XML answer. A missing `Expiration` counts as already expired, as
/// in Flux; `Expiration` may carry a fraction (moto) or not (AWS).
pub fn parse_assume_role_response(body: &[u8]) -> Result<AwsCredentials> {
    let step = Step::StsAssumeRoleWithWebIdentity;
    let text = std::str::from_utf8(body)
        .map_err(|_| Error::invalid(Provider::Aws, step, "response is not UTF-8 XML"))?;
    if xml::element(text, "Credentials").is_none() {
        return Err(Error::invalid(Provider::Aws, step, "credentials are nil"));
    }
    let field = |name: &str| {
        xml::text_in(text, "Credentials", name)
            .filter(|v| !v.is_empty())
            .ok_or_else(|| {
                Error::invalid(Provider::Aws, step, format!("credentials have no {name}"))
            })
    };
    let expires_at = xml::text_in(text, "Credentials", "Expiration")
        .and_then(|v| crate::time::parse_rfc3339(&v))
        .unwrap_or(SystemTime::UNIX_EPOCH);
    Ok(AwsCredentials {
        access_key_id: field("AccessKeyId")?,
        secret_access_key: Secret::new(field("SecretAccessKey")?),
        session_token: Some(Secret::new(field("SessionToken")?)),
        expires_at: Some(expires_at),
    })
}

/// `Code: Message` from an AWS error body (XML or JSON), else the body's start.
pub fn error_summary(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    if let (Some(code), Some(message)) = (
        xml::element(&text, "Code").map(xml::decode),
        xml::element(&text, "Message").map(xml::decode),
    ) {
        return crate::http::error_body_excerpt(format!("{code}: {message}").as_bytes());
    }
    #[derive(Deserialize)]
    struct JsonError {
        #[serde(rename = "__type", default)]
        kind: String,
        #[serde(alias = "Message", default)]
        message: String,
    }
    if let Ok(err) = serde_json::from_slice::<JsonError>(body)
        && (!err.kind.is_empty() || !err.message.is_empty())
    {
        let kind = err.kind.rsplit('#').next().unwrap_or_default().to_string();
        return crate::http::error_body_excerpt(format!("{kind}: {}", err.message).as_bytes());
    }
    crate::http::error_body_excerpt(body)
}

fn check_status(response: HttpResponse, call: CallContext, endpoint: &url::Url) -> Result<Vec<u8>> {
    if (200..300).contains(&response.status) {
        return Ok(response.body);
    }
    Err(Error::Status {
        provider: call.provider,
        step: call.step,
        endpoint: crate::http::endpoint_for_errors(endpoint),
        field: call.field,
        status: response.status,
        body: error_summary(&response.body),
    })
}

// ---------------------------------------------------------------------------------------
// ECR GetAuthorizationToken
// ---------------------------------------------------------------------------------------

/// The unsigned GetAuthorizationToken request and the SigV4 signing name it needs.
pub fn get_authorization_token_request(
    endpoint: &url::Url,
    input: &RegistryInput,
) -> (HttpRequest, &'static str) {
    let (target, service) = match input {
        RegistryInput::AwsPublic => (ECR_PUBLIC_TARGET, "ecr-public"),
        _ => (ECR_TARGET, "ecr"),
    };
    let mut request = HttpRequest::new(Method::Post, endpoint.clone())
        .header("Content-Type", "application/x-amz-json-1.1")
        .header("X-Amz-Target", target);
    request.body = b"{}".to_vec();
    (request, service)
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct AuthorizationData {
    authorization_token: Option<String>,
    expires_at: Option<f64>,
}

/// The registry login from ECR's answer (private: a list; public: one object). The token
/// decodes to `user:password`; `expiresAt` is epoch seconds, possibly fractional.
pub fn parse_authorization_token(body: &[u8], input: &RegistryInput) -> Result<RegistryLogin> {
    let step = Step::EcrGetAuthorizationToken;
    let invalid = |message: &str| Error::invalid(Provider::Aws, step, message);
    let value: serde_json::Value = serde_json::from_slice(body)
        .map_err(|err| invalid(&format!("response is not JSON: {err}")))?;
    let data = value.get("authorizationData");
    let data = match (input, data) {
        (RegistryInput::AwsPublic, Some(object)) if object.is_object() => object.clone(),
        (_, Some(serde_json::Value::Array(items))) => items
            .first()
            .cloned()
            .ok_or_else(|| invalid("no authorization data returned"))?,
        _ => return Err(invalid("no authorization data returned")),
    };
    let data: AuthorizationData = serde_json::from_value(data)
        .map_err(|err| invalid(&format!("invalid authorization data: {err}")))?;
    let token = data
        .authorization_token
        .ok_or_else(|| invalid("authorization token is nil"))?;
    let expires_at = data
        .expires_at
        .ok_or_else(|| invalid("authorization token expiration is nil"))?;
    let expires_at = crate::time::from_epoch_seconds(expires_at)
        .ok_or_else(|| invalid("authorization token expiration is out of range"))?;
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(token.trim())
        .map_err(|_| invalid("invalid authorization token format"))?;
    let decoded =
        String::from_utf8(decoded).map_err(|_| invalid("invalid authorization token format"))?;
    let parts: Vec<&str> = decoded.split(':').collect();
    let [username, password] = parts.as_slice() else {
        return Err(invalid("invalid authorization token format"));
    };
    Ok(RegistryLogin {
        username: username.to_string(),
        password: Secret::new(*password),
        expires_at,
    })
}

// ---------------------------------------------------------------------------------------
// Container credentials (EKS Pod Identity, ECS)
// ---------------------------------------------------------------------------------------

const ECS_CONTAINER_HOST: &str = "169.254.170.2";
const EC2_METADATA: &str = "http://169.254.169.254/";
const EKS_CONTAINER_HOSTS: [&str; 3] = ["169.254.170.23", "[fd00:ec2::23]", "fd00:ec2::23"];

/// The container credentials URL: the full URI (https, or http to loopback or the ECS/EKS
/// agent addresses) or the relative one under `http://169.254.170.2`.
pub fn container_credentials_url(env: &AwsEnvironment) -> Result<Option<url::Url>> {
    let field = "AWS_CONTAINER_CREDENTIALS_FULL_URI";
    let fail =
        |message: String| Error::config(Provider::Aws, Step::ContainerCredentials, field, message);
    if let Some(relative) = &env.container_credentials_relative_uri {
        let url = url::Url::parse(&format!("http://{ECS_CONTAINER_HOST}{relative}"))
            .map_err(|err| fail(format!("invalid relative URI: {err}")))?;
        return Ok(Some(url));
    }
    let Some(full) = &env.container_credentials_full_uri else {
        return Ok(None);
    };
    let url = url::Url::parse(full).map_err(|err| fail(format!("invalid URL: {err}")))?;
    let allowed = match url.scheme() {
        "https" => true,
        "http" => match url.host() {
            Some(url::Host::Ipv4(ip)) => {
                ip.is_loopback()
                    || [ECS_CONTAINER_HOST, EKS_CONTAINER_HOSTS[0]]
                        .contains(&ip.to_string().as_str())
            }
            Some(url::Host::Ipv6(ip)) => {
                ip.is_loopback() || EKS_CONTAINER_HOSTS.contains(&ip.to_string().as_str())
            }
            Some(url::Host::Domain(domain)) => domain == "localhost",
            None => false,
        },
        _ => false,
    };
    if !allowed {
        return Err(fail(format!(
            "{} is not allowed: plain http only to loopback or the ECS/EKS agent addresses",
            crate::http::endpoint_for_errors(&url)
        )));
    }
    Ok(Some(url))
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct ContainerCredentials {
    access_key_id: Option<String>,
    secret_access_key: Option<String>,
    token: Option<String>,
    expiration: Option<String>,
}

/// Credentials from the container (or EC2 instance metadata) endpoint's JSON.
pub fn parse_container_credentials(body: &[u8], step: Step) -> Result<AwsCredentials> {
    let parsed: ContainerCredentials = Answer::new(Provider::Aws, step).json(body, "JSON")?;
    let (Some(access_key_id), Some(secret)) = (parsed.access_key_id, parsed.secret_access_key)
    else {
        return Err(Error::invalid(
            Provider::Aws,
            step,
            "response lacks AccessKeyId or SecretAccessKey",
        ));
    };
    Ok(AwsCredentials {
        access_key_id,
        secret_access_key: Secret::new(secret),
        session_token: parsed.token.map(Secret::new),
        expires_at: parsed
            .expiration
            .as_deref()
            .and_then(crate::time::parse_rfc3339),
    })
}

/// Reads a token file (re-read on every refresh, as the SDKs do), bounded in size.
pub fn read_token_file(
    path: &Path,
    step: Step,
    field: &'static str,
    provider: Provider,
) -> Result<Secret> {
    use std::io::Read as _;
    let fail = |message: String| Error::config(provider, step, field, message);
    let file = std::fs::File::open(path)
        .map_err(|err| fail(format!("reading {}: {err}", path.display())))?;
    let mut text = String::new();
    file.take(MAX_TOKEN_FILE_BYTES + 1)
        .read_to_string(&mut text)
        .map_err(|err| fail(format!("reading {}: {err}", path.display())))?;
    if text.len() as u64 > MAX_TOKEN_FILE_BYTES {
        return Err(fail(format!(
            "{} is larger than {MAX_TOKEN_FILE_BYTES} bytes",
            path.display()
        )));
    }
    let token = text.trim();
    if token.is_empty() {
        return Err(fail(format!("{} is empty", path.display())));
    }
    Ok(Secret::new(token))
}

// ---------------------------------------------------------------------------------------
// The client
// ---------------------------------------------------------------------------------------

/// Makes the AWS calls. Cheap to clone.
pub type AwsClient = crate::config::ProviderClient<AwsEnvironment>;

impl AwsClient {
    /// The registry login for `input` as `identity`: the access credentials, then ECR.
    pub async fn registry_login(
        &self,
        input: &RegistryInput,
        identity: &AwsIdentity,
    ) -> Result<RegistryLogin> {
        let credentials = self.access_credentials(input, identity).await?;
        self.ecr_login(&credentials, input).await
    }

    /// Credentials for `identity`; the STS region is the registry's.
    pub async fn access_credentials(
        &self,
        input: &RegistryInput,
        identity: &AwsIdentity,
    ) -> Result<AwsCredentials> {
        match identity {
            AwsIdentity::Controller => {
                let region = input
                    .aws_region()
                    .filter(|r| !r.is_empty())
                    .map(str::to_string)
                    .or_else(|| self.env.region.clone());
                self.controller_credentials(region.as_deref()).await
            }
            AwsIdentity::ServiceAccount {
                role_arn,
                session_name,
                token,
            } => {
                let region = input.aws_region().filter(|r| !r.is_empty()).ok_or_else(|| {
                    Error::config(
                        Provider::Aws,
                        Step::StsAssumeRoleWithWebIdentity,
                        "spec.image",
                        "an AWS region is required for authenticating with a service account. please configure one in the object spec",
                    )
                })?;
                self.assume_role_with_web_identity(
                    region,
                    role_arn,
                    session_name,
                    token,
                    "the service account's eks.amazonaws.com/role-arn annotation and the role's trust policy",
                )
                .await
            }
        }
    }

    /// The controller's credentials: static keys, then IRSA (web identity token file), then
    /// container credentials (EKS Pod Identity), then the EC2 node role (IMDSv2). Shared
    /// config files are not read.
    pub async fn controller_credentials(&self, region: Option<&str>) -> Result<AwsCredentials> {
        let env = &self.env;
        if let (Some(key), Some(secret)) = (&env.access_key_id, &env.secret_access_key) {
            return Ok(AwsCredentials {
                access_key_id: key.clone(),
                secret_access_key: secret.clone(),
                session_token: env.session_token.clone(),
                expires_at: None,
            });
        }
        if let (Some(file), Some(role_arn)) = (&env.web_identity_token_file, &env.role_arn) {
            let region = region.ok_or_else(|| {
                Error::config(
                    Provider::Aws,
                    Step::ControllerCredentials,
                    "AWS_REGION",
                    "AWS_REGION environment variable is not set in the Flux controller",
                )
            })?;
            let token = read_token_file(
                file,
                Step::WebIdentityTokenFile,
                "AWS_WEB_IDENTITY_TOKEN_FILE",
                Provider::Aws,
            )?;
            let session_name = env
                .role_session_name
                .clone()
                .unwrap_or_else(|| generated_session_name(region));
            return self
                .assume_role_with_web_identity(
                    region,
                    role_arn,
                    &session_name,
                    &token,
                    "AWS_ROLE_ARN and the role's trust policy",
                )
                .await;
        }
        if let Some(url) = container_credentials_url(env)? {
            return self.container_credentials(&url).await;
        }
        if !env.ec2_metadata_disabled {
            return self.instance_metadata_credentials().await;
        }
        Err(Error::config(
            Provider::Aws,
            Step::ControllerCredentials,
            "the controller's AWS environment",
            "no AWS credentials found: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, AWS_WEB_IDENTITY_TOKEN_FILE and AWS_ROLE_ARN (IRSA), or AWS_CONTAINER_CREDENTIALS_FULL_URI (EKS Pod Identity)",
        ))
    }

    /// The node role from EC2 instance metadata, IMDSv2: a session token, the role name,
    /// then the role's credentials.
    pub async fn instance_metadata_credentials(&self) -> Result<AwsCredentials> {
        let step = Step::Ec2InstanceMetadata;
        let base = match &self.endpoints.aws_ec2_metadata {
            Some(url) => url.clone(),
            None => endpoint(
                None,
                EC2_METADATA.to_string(),
                "AWS_EC2_METADATA_SERVICE_ENDPOINT",
            )?,
        };
        let join = |path: &str| {
            base.join(path).map_err(|err| {
                Error::config(
                    Provider::Aws,
                    step,
                    "AWS_EC2_METADATA_SERVICE_ENDPOINT",
                    err.to_string(),
                )
            })
        };
        let call = CallContext {
            provider: Provider::Aws,
            step,
            field: "the node's instance profile (or AWS_EC2_METADATA_DISABLED)",
        };
        let token_url = join("latest/api/token")?;
        let request = HttpRequest::new(Method::Put, token_url.clone())
            .header("X-aws-ec2-metadata-token-ttl-seconds", "21600");
        let body = check_status(self.http.send(&request, call).await?, call, &token_url)?;
        let session = Secret::new(String::from_utf8_lossy(&body).trim().to_string());
        let get = |url: url::Url| {
            HttpRequest::new(Method::Get, url).header("X-aws-ec2-metadata-token", session.expose())
        };
        let roles_url = join("latest/meta-data/iam/security-credentials/")?;
        let body = check_status(
            self.http.send(&get(roles_url.clone()), call).await?,
            call,
            &roles_url,
        )?;
        let role = String::from_utf8_lossy(&body)
            .lines()
            .map(str::trim)
            .find(|line| !line.is_empty())
            .map(str::to_string)
            .ok_or_else(|| Error::invalid(Provider::Aws, step, "no instance profile role"))?;
        let role_url = join(&format!(
            "latest/meta-data/iam/security-credentials/{}",
            percent_encoding::utf8_percent_encode(&role, crate::http::PATH_SEGMENT)
        ))?;
        let body = check_status(
            self.http.send(&get(role_url.clone()), call).await?,
            call,
            &role_url,
        )?;
        parse_container_credentials(&body, step)
    }

    /// STS `AssumeRoleWithWebIdentity` in `region`.
    pub async fn assume_role_with_web_identity(
        &self,
        region: &str,
        role_arn: &str,
        session_name: &str,
        token: &Secret,
        field: &'static str,
    ) -> Result<AwsCredentials> {
        let endpoint = sts_endpoint(&self.endpoints, region)?;
        let request =
            assume_role_with_web_identity_request(&endpoint, role_arn, session_name, token);
        let call = CallContext {
            provider: Provider::Aws,
            step: Step::StsAssumeRoleWithWebIdentity,
            field,
        };
        let response = self.http.send(&request, call).await?;
        let body = check_status(response, call, &endpoint)?;
        parse_assume_role_response(&body)
    }

    /// `GET` the container credentials endpoint with the authorization token (file first).
    pub async fn container_credentials(&self, url: &url::Url) -> Result<AwsCredentials> {
        let mut request = HttpRequest::new(Method::Get, url.clone());
        let token = match (
            &self.env.container_authorization_token_file,
            &self.env.container_authorization_token,
        ) {
            (Some(file), _) => Some(read_token_file(
                file,
                Step::ContainerCredentials,
                "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE",
                Provider::Aws,
            )?),
            (None, Some(token)) => Some(token.clone()),
            (None, None) => None,
        };
        if let Some(token) = token {
            request = request.header("Authorization", token.expose());
        }
        let call = CallContext {
            provider: Provider::Aws,
            step: Step::ContainerCredentials,
            field: "the EKS Pod Identity association and AWS_CONTAINER_CREDENTIALS_FULL_URI",
        };
        let response = self.http.send(&request, call).await?;
        let body = check_status(response, call, url)?;
        parse_container_credentials(&body, Step::ContainerCredentials)
    }

    /// ECR `GetAuthorizationToken` (private or public), SigV4-signed.
    pub async fn ecr_login(
        &self,
        credentials: &AwsCredentials,
        input: &RegistryInput,
    ) -> Result<RegistryLogin> {
        let endpoint = ecr_endpoint(&self.endpoints, input)?;
        let region = input.aws_region().unwrap_or(AWS_PUBLIC_REGION);
        let (mut request, service) = get_authorization_token_request(&endpoint, input);
        sigv4::sign(
            &mut request,
            credentials,
            sigv4::SigningScope {
                region,
                service,
                at: SystemTime::now(),
            },
        );
        let call = CallContext {
            provider: Provider::Aws,
            step: Step::EcrGetAuthorizationToken,
            field: "the role's ecr:GetAuthorizationToken permission",
        };
        let response = self.http.send(&request, call).await?;
        let body = check_status(response, call, &endpoint)?;
        parse_authorization_token(&body, input)
    }
}

/// A session name for the controller when `AWS_ROLE_SESSION_NAME` is unset.
fn generated_session_name(region: &str) -> String {
    let nanos = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or(Duration::ZERO)
        .as_nanos();
    let mut name = format!("image-automation-{nanos}.{region}.fluxcd.io");
    name.truncate(MAX_SESSION_NAME);
    name
}

#[cfg(test)]
mod tests;
