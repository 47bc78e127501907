#!/bin/sh
# One-shot MinIO setup, run by the `minio-init` service of docker-compose.yml
# (image minio/mc) after MinIO is healthy and before the gateway starts.
# Idempotent: every `docker compose up` runs it again, and a second run changes
# nothing (a changed GATEWAY_S3_SECRET_KEY is applied to the gateway's user).
#
# 1. the bucket;
# 2. a MinIO user for the gateway that can use only that bucket (the gateway
#    never holds the root credentials);
# 3. the bucket's ObjectCreated (put) and ObjectRemoved (delete) events bound
#    to the webhook target that MinIO's MINIO_NOTIFY_WEBHOOK_*_<ID> variables
#    define (it posts them to the gateway's POST /dropbox/v1/events).
#
# Incomplete multipart uploads: MinIO has no AbortIncompleteMultipartUpload
# lifecycle rule (`mc ilm rule add` has no flag for it, and `mc ilm import`
# reports success but drops the element: minio/minio#19115, closed as "working
# as intended"). MinIO aborts stale multipart uploads itself instead, after
# MINIO_API_STALE_UPLOADS_EXPIRY (set on the minio service in
# docker-compose.yml); the gateway aborts abandoned uploads before that.
set -eu

: "${MINIO_URL:?MINIO_URL is not set (the address of MinIO inside compose, e.g. http://minio:9000)}"
: "${MINIO_ROOT_USER:?MINIO_ROOT_USER is not set}"
: "${MINIO_ROOT_PASSWORD:?MINIO_ROOT_PASSWORD is not set}"
: "${BUCKET:?BUCKET is not set}"
: "${GATEWAY_S3_ACCESS_KEY:?GATEWAY_S3_ACCESS_KEY is not set}"
: "${GATEWAY_S3_SECRET_KEY:?GATEWAY_S3_SECRET_KEY is not set}"
: "${WEBHOOK_ID:?WEBHOOK_ID is not set (the <ID> of MINIO_NOTIFY_WEBHOOK_ENABLE_<ID>)}"

ALIAS=store
POLICY=dropbox-gateway-bucket
# The target's ARN: arn:minio:sqs:<region>:<ID>:webhook, region empty as long
# as MINIO_SITE_REGION / MINIO_REGION are not set on the minio service.
ARN="arn:minio:sqs::${WEBHOOK_ID}:webhook"

log() { printf 'minio-init: %s\n' "$*"; }

# mc keeps its aliases under $HOME; the image may run without a writable one.
export MC_CONFIG_DIR="${MC_CONFIG_DIR:-/tmp/.mc}"

log "waiting for MinIO at $MINIO_URL"
tries=0
until mc alias set "$ALIAS" "$MINIO_URL" "$MINIO_ROOT_USER" "$MINIO_ROOT_PASSWORD" >/dev/null 2>&1; do
  tries=$((tries + 1))
  if [ "$tries" -ge 60 ]; then
    log "MinIO did not accept the root credentials within 60 s (check MINIO_ROOT_USER / MINIO_ROOT_PASSWORD in .env)"
    mc alias set "$ALIAS" "$MINIO_URL" "$MINIO_ROOT_USER" "$MINIO_ROOT_PASSWORD"
    exit 1
  fi
  sleep 1
done

log "bucket $BUCKET"
mc mb --ignore-existing "$ALIAS/$BUCKET"

# Every object action in the bucket, and listing it; nothing on other buckets, and
# nothing on the bucket's own settings (its event binding, policy, lifecycle).
log "user $GATEWAY_S3_ACCESS_KEY with access to $BUCKET only"
policy_file="$(mktemp)"
cat >"$policy_file" <<EOF
{
  "Version": "2012-10-17",
  "Statement": [
    {
      "Effect": "Allow",
      "Action": ["s3:GetBucketLocation", "s3:ListBucket", "s3:ListBucketMultipartUploads"],
      "Resource": ["arn:aws:s3:::${BUCKET}"]
    },
    {
      "Effect": "Allow",
      "Action": ["s3:*"],
      "Resource": ["arn:aws:s3:::${BUCKET}/*"]
    }
  ]
}
EOF
mc admin policy create "$ALIAS" "$POLICY" "$policy_file"
rm -f "$policy_file"
# `user add` on an existing user sets its secret key: rotating the key in .env works.
mc admin user add "$ALIAS" "$GATEWAY_S3_ACCESS_KEY" "$GATEWAY_S3_SECRET_KEY"
# Attaching a policy the user already has is an error to mc, so look first
# (with the shell alone: the mc image has no grep).
case "$(mc admin user info "$ALIAS" "$GATEWAY_S3_ACCESS_KEY")" in
  *"$POLICY"*) ;;
  *) mc admin policy attach "$ALIAS" "$POLICY" --user "$GATEWAY_S3_ACCESS_KEY" ;;
esac

log "events of $BUCKET -> $ARN"
mc event add --ignore-existing "$ALIAS/$BUCKET" "$ARN" --event put,delete
mc event ls "$ALIAS/$BUCKET" "$ARN"

log "done"
