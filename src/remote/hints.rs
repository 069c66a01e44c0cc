//! What to do about a store's error, by its S3 error code: the last part of
//! every one-line store failure ("…: HTTP 403 SignatureDoesNotMatch; check
//! …"). A pure table, so each code's advice is tested without a store.

/// Advice for an S3 error `code` (as in the `<Code>` of an error answer),
/// or None for a code with nothing better to say than the code itself.
pub(super) fn for_code(code: &str) -> Option<&'static str> {
    Some(match code {
        "InvalidAccessKeyId" | "SignatureDoesNotMatch" | "InvalidClientTokenId" => {
            "check AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY (or the keys of AWS_PROFILE in ~/.aws/credentials)"
        }
        "ExpiredToken" | "InvalidToken" | "TokenRefreshRequired" => {
            "the session token is expired or invalid: renew AWS_SESSION_TOKEN (with AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY) or the profile's session"
        }
        "AccessDenied" | "AllAccessDisabled" | "AccountProblem" => {
            "the key is valid but not allowed this: check the user's policy and the bucket policy for s3:PutObject, s3:GetObject, s3:ListBucket, s3:ListBucketMultipartUploads, s3:AbortMultipartUpload (AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY name the user)"
        }
        "NoSuchBucket" => "check that the bucket exists (and AWS_REGION / AWS_ENDPOINT_URL)",
        "PermanentRedirect"
        | "AuthorizationHeaderMalformed"
        | "IllegalLocationConstraintException" => {
            "the bucket is in another region: set AWS_REGION to the bucket's region"
        }
        "RequestTimeTooSkewed" | "RequestExpired" => {
            "this machine's clock is off: sync it (NTP) and retry"
        }
        "SlowDown"
        | "Throttling"
        | "ThrottlingException"
        | "RequestLimitExceeded"
        | "TooManyRequests" => "the store is throttling (still after retries): try again later",
        _ => return None,
    })
}

/// The first known S3 error code named in `text` (an opendal error's
/// message carries the store's XML answer).
pub(super) fn code_in(text: &str) -> Option<&str> {
    if let Some((_, rest)) = text.split_once("<Code>") {
        return rest.split_once("</Code>").map(|(c, _)| c);
    }
    const CODES: &[&str] = &[
        "InvalidAccessKeyId",
        "SignatureDoesNotMatch",
        "InvalidClientTokenId",
        "ExpiredToken",
        "InvalidToken",
        "AccessDenied",
        "NoSuchBucket",
        "PermanentRedirect",
        "AuthorizationHeaderMalformed",
        "RequestTimeTooSkewed",
        "SlowDown",
    ];
    CODES.iter().copied().find(|c| text.contains(c))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_store_error_code_says_what_to_check() {
        for (code, says) in [
            ("InvalidAccessKeyId", "AWS_SECRET_ACCESS_KEY"),
            ("SignatureDoesNotMatch", "AWS_SECRET_ACCESS_KEY"),
            ("ExpiredToken", "AWS_SESSION_TOKEN"),
            ("AccessDenied", "policy"),
            ("NoSuchBucket", "bucket exists"),
            ("PermanentRedirect", "AWS_REGION"),
            ("AuthorizationHeaderMalformed", "AWS_REGION"),
            ("RequestTimeTooSkewed", "clock"),
            ("SlowDown", "throttling"),
        ] {
            assert!(for_code(code).unwrap().contains(says), "{code}");
        }
        assert_eq!(for_code("InternalError"), None);
    }

    #[test]
    fn codes_are_found_in_an_xml_answer_or_a_message() {
        assert_eq!(
            code_in("<Error><Code>NoSuchBucket</Code><Message>x</Message></Error>"),
            Some("NoSuchBucket")
        );
        assert_eq!(
            code_in("S3Error { code: \"AccessDenied\", message: \"\" }"),
            Some("AccessDenied")
        );
        assert_eq!(code_in("connection refused"), None);
    }
}
