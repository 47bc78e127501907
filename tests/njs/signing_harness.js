/*
 * Lets tests/test_cdn_signing.py call cdn/signing.js's pure functions in a real
 * nginx: POST a JSON object of arguments, get the function's answer as text.
 */
import signing from 'signing.js';

function sigv4Authorization(r) {
    r.return(200, signing.sigv4Authorization(JSON.parse(r.requestText)));
}

function edgeSignature(r) {
    const a = JSON.parse(r.requestText);
    r.return(200, signing.edgeSignature(a.secret, a.expires, a.path, a.ascii_name, a.type));
}

function signingWindow(r) {
    const a = JSON.parse(r.requestText);
    r.return(200, signing.signingWindow(a.signedAt, a.window));
}

export default {sigv4Authorization, edgeSignature, signingWindow};
