/*
 * The CDN tier's two signatures, run by nginx's njs module (cdn/nginx.conf.template).
 *
 * 1. The edge check (edgeVerdict): a download URL made by gateway/core/downloads.py
 *    carries an HMAC-SHA256, keyed with GATEWAY_CDN_SECRET, over its path,
 *    expiry, ASCII file name and content type, and nothing else: no store
 *    credential. nginx checks it on every request before it looks at the cache.
 * 2. The store request: nginx fetches a miss from the private store with AWS
 *    Signature Version 4 (header form), signed with the tier's own read-only
 *    store key (CDN_S3_ACCESS_KEY / CDN_S3_SECRET_KEY). SigV4 tolerates 15
 *    minutes of clock skew, and a slow download on a cold cache asks for its
 *    later slices long after it started. The edge signs once per download
 *    (edgeStoreAuthorization; nginx keeps a download's variables for all of
 *    its slices) and asks the store itself during the seconds edgeStoreSeconds
 *    lists, the first 10 minutes; slices asked for later go through the store
 *    fetcher, which signs each as it is sent (storeAuthorization). See the top
 *    of the template.
 *
 * Secrets come from the environment (the main configuration's `env`
 * directives hand them to the workers), never from a configuration file.
 *
 * Written for njs 0.7 (Debian bookworm's libnginx-mod-http-js) up to 0.9 (the
 * official nginx image): the synchronous `crypto` module (js_set handlers must
 * answer at once), and no `for ... of` (njs 0.7 lacks it).
 */

const crypto = require('crypto');

// Domain separation: this key signs nothing else, but the label keeps it so.
// gateway/core/downloads.py's SIGNATURE_LABEL is the same string.
const EDGE_LABEL = 'dropbox-cdn-download-v1';
const EXPIRES = /^[0-9]{1,12}$/;

const SIGNED_HEADERS = 'host;x-amz-content-sha256;x-amz-date';
// The store requests have no body: the payload hash is that of the empty string.
const EMPTY_SHA256 = 'e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855';

function hmac(key, text) {
    return crypto.createHmac('sha256', key).update(text);
}

/**
 * The edge signature of a download URL: base64url (no padding) of
 * HMAC-SHA256(secret, label \n expires \n path \n asciiName \n type).
 * `path` is the decoded path nginx sees as $uri; the other fields are the raw
 * query arguments. No field can hold a newline (the location's pattern and raw
 * arguments keep them out), so fields cannot run into each other.
 */
function edgeSignature(secret, expires, path, asciiName, type) {
    return hmac(secret, [EDGE_LABEL, expires, path, asciiName, type].join('\n')).digest('base64url');
}

/** Equal strings, compared in time that depends on the length only (the length of a signature is public). */
function sameText(given, expected) {
    if (given.length !== expected.length) {
        return false;
    }
    let difference = 0;
    for (let i = 0; i < expected.length; i++) {
        difference |= given.charCodeAt(i) ^ expected.charCodeAt(i);
    }
    return difference === 0;
}

/**
 * js_set $edge_verdict: "valid", "expired" (a genuine URL past its expiry) or
 * "invalid" (anything altered, missing or unreadable). The signature is checked
 * first, so a forged URL never learns whether its expiry would have passed.
 */
function edgeVerdict(r) {
    try {
        const secret = process.env.GATEWAY_CDN_SECRET;
        if (!secret) {
            r.error('GATEWAY_CDN_SECRET is not set: every download URL is refused');
            return 'invalid';
        }
        const v = r.variables;
        const expires = v.arg_exp || '';
        if (!EXPIRES.test(expires)) {
            return 'invalid';
        }
        const expected = edgeSignature(secret, expires, v.uri, v.arg_ascii_name || '', v.arg_type || '');
        if (!sameText(v.arg_sig || '', expected)) {
            return 'invalid';
        }
        return Number(expires) < Date.now() / 1000 ? 'expired' : 'valid';
    } catch (e) {
        r.error('edge check failed: ' + e);
        return 'invalid';
    }
}

/** ISO 8601 basic format, as SigV4 wants it: 20260101T120000Z. */
function amzDate(date) {
    return date.toISOString().replace(/\.[0-9]{3}Z$/, 'Z').replace(/[-:]/g, '');
}

/** S3's URI encoding of one path segment: everything but A-Z a-z 0-9 - . _ ~ is %-encoded. */
function uriEncode(segment) {
    return encodeURIComponent(segment).replace(/[!'()*]/g,
        (c) => '%' + c.charCodeAt(0).toString(16).toUpperCase());
}

/**
 * The Authorization header of a body-less store request, AWS Signature Version 4.
 * `request`: {method, path, host, region, amzDate, accessKey, secretKey}; `path`
 * is /<bucket>/<key>, unencoded; `amzDate` is also sent as X-Amz-Date, and
 * EMPTY_SHA256 as X-Amz-Content-Sha256.
 */
function sigv4Authorization(request) {
    const day = request.amzDate.slice(0, 8);
    const scopeParts = [day, request.region, 's3', 'aws4_request'];
    const canonicalRequest = [
        request.method,
        request.path.split('/').map(uriEncode).join('/'),
        '',  // no query
        'host:' + request.host,
        'x-amz-content-sha256:' + EMPTY_SHA256,
        'x-amz-date:' + request.amzDate,
        '',
        SIGNED_HEADERS,
        EMPTY_SHA256,
    ].join('\n');
    const stringToSign = [
        'AWS4-HMAC-SHA256',
        request.amzDate,
        scopeParts.join('/'),
        crypto.createHash('sha256').update(canonicalRequest).digest('hex'),
    ].join('\n');
    const signingKey = scopeParts.reduce((key, part) => hmac(key, part).digest(), 'AWS4' + request.secretKey);
    return 'AWS4-HMAC-SHA256 Credential=' + request.accessKey + '/' + scopeParts.join('/')
        + ', SignedHeaders=' + SIGNED_HEADERS
        + ', Signature=' + hmac(signingKey, stringToSign).digest('hex');
}

/** The unix time of an X-Amz-Date (20260101T120000Z). */
function amzDateSeconds(text) {
    return Date.UTC(Number(text.slice(0, 4)), Number(text.slice(4, 6)) - 1, Number(text.slice(6, 8)),
        Number(text.slice(9, 11)), Number(text.slice(11, 13)), Number(text.slice(13, 15))) / 1000;
}

/**
 * The seconds (unix times, space-separated) during which a store request signed at
 * `signedAt` (an X-Amz-Date) may be sent: from the second before (nginx may have read
 * its clock just before the signature was made) to `window` seconds after; none if
 * `window` is negative. The window must stay well inside SigV4's 15 minutes.
 */
function signingWindow(signedAt, window) {
    const signed = amzDateSeconds(signedAt);
    const seconds = [];
    for (let second = signed - 1; window >= 0 && second <= signed + window; second++) {
        seconds.push(String(second));
    }
    return seconds.join(' ');
}

/** js_set $edge_store_date: when a download's own store signature is made (once per download). */
function edgeStoreDate(r) {
    return amzDate(new Date());
}

/** js_set $edge_store_seconds: when the edge may ask the store with that signature ($edge_signing_seconds). */
function edgeStoreSeconds(r) {
    return signingWindow(r.variables.edge_store_date, Number(r.variables.edge_signing_seconds));
}

/** js_set $edge_store_authorization: a download's own store signature, made at $edge_store_date. */
function edgeStoreAuthorization(r) {
    // GET even for a HEAD: the cache asks the store for whole answers (proxy_cache_convert_head).
    return signStoreRequest(r, 'GET', r.variables.edge_store_date);
}

/** js_set $store_date: when this store request is signed (X-Amz-Date). */
function storeDate(r) {
    return amzDate(new Date());
}

/** js_set $store_content_sha256: X-Amz-Content-Sha256 of a body-less request. */
function storeContentSha256(r) {
    return EMPTY_SHA256;
}

/** The Authorization of a `method` request for $store_path to $store_host, signed at `date` with the tier's read-only key. */
function signStoreRequest(r, method, date) {
    const accessKey = process.env.CDN_S3_ACCESS_KEY;
    const secretKey = process.env.CDN_S3_SECRET_KEY;
    if (!accessKey || !secretKey) {
        r.error('CDN_S3_ACCESS_KEY or CDN_S3_SECRET_KEY is not set: the store will refuse the CDN tier');
    }
    const v = r.variables;
    return sigv4Authorization({
        method: method,
        path: v.store_path,
        host: v.store_host,
        region: v.store_region,
        amzDate: date,
        accessKey: accessKey || '',
        secretKey: secretKey || '',
    });
}

/** js_set $store_authorization: sign this request to the store, from the store fetcher, as it is sent. */
function storeAuthorization(r) {
    return signStoreRequest(r, r.method, r.variables.store_date);
}

export default {
    edgeVerdict,
    edgeStoreDate,
    edgeStoreSeconds,
    edgeStoreAuthorization,
    storeDate,
    storeContentSha256,
    storeAuthorization,
    // Pure functions, exported for tests/test_cdn_signing.py.
    edgeSignature,
    sigv4Authorization,
    signingWindow,
};
