// The worker thread behind NodeHttpTransport: carries one exchange at a time out with
// Node's http/https while the main thread waits in Atomics.wait. Answers on the port, then
// sets the flag and wakes the main thread, which reads the answer with receiveMessageOnPort.

import http from 'node:http';
import https from 'node:https';
import { workerData } from 'node:worker_threads';

const { port, flag: flagBuffer, ca, maxBodyBytes } = workerData;
const flag = new Int32Array(flagBuffer);
const agents = {
  'http:': new http.Agent({ keepAlive: true, maxSockets: 8 }),
  'https:': new https.Agent({ keepAlive: true, maxSockets: 8, rejectUnauthorized: true, ...(ca ? { ca } : {}) }),
};

const CONNECT = new Set(['ECONNREFUSED', 'ENOTFOUND', 'EAI_AGAIN', 'EAI_FAIL', 'EAI_NONAME', 'EHOSTUNREACH', 'ENETUNREACH', 'ECONNRESET', 'EPIPE', 'ECONNABORTED', 'EADDRNOTAVAIL', 'ENETDOWN', 'EHOSTDOWN']);
const TLS = new Set(['CERT_HAS_EXPIRED', 'CERT_NOT_YET_VALID', 'DEPTH_ZERO_SELF_SIGNED_CERT', 'SELF_SIGNED_CERT_IN_CHAIN', 'UNABLE_TO_VERIFY_LEAF_SIGNATURE',
  'UNABLE_TO_GET_ISSUER_CERT', 'UNABLE_TO_GET_ISSUER_CERT_LOCALLY', 'CERT_UNTRUSTED', 'CERT_REVOKED', 'CERT_REJECTED', 'HOSTNAME_MISMATCH', 'ERR_TLS_CERT_ALTNAME_INVALID',
  'CERT_SIGNATURE_FAILURE', 'INVALID_CA', 'PATH_LENGTH_EXCEEDED', 'INVALID_PURPOSE']);

function classify(err) {
  const code = String(err?.code ?? '');
  if (TLS.has(code) || code.startsWith('ERR_TLS_') || code.startsWith('ERR_SSL_') || /^(ERR_OSSL|SSL_|TLS_)/.test(code)) return 'tls';
  if (CONNECT.has(code)) return 'cannot-connect';
  if (code === 'ERR_INVALID_URL' || code === 'ERR_INVALID_PROTOCOL') return 'invalid-url';
  return 'other';
}

function answer(message, transfer = []) {
  port.postMessage(message, transfer);
  Atomics.store(flag, 0, 1);
  Atomics.notify(flag, 0);
}

function exchange({ id, method, url, headers, body, timeoutMs }) {
  let done = false;
  let timer = null;
  const finish = (message, transfer) => {
    if (done) return;
    done = true;
    clearTimeout(timer);
    answer({ id, ...message }, transfer);
  };
  let target;
  try {
    target = new URL(url);
  } catch {
    finish({ error: { case: 'invalid-url', message: 'the URL could not be parsed' } });
    return;
  }
  const agent = agents[target.protocol];
  if (!agent) {
    finish({ error: { case: 'invalid-url', message: `${target.protocol} is not http or https` } });
    return;
  }
  // The host adds only Host and Content-Length (here, so no chunked encoding).
  // Node sets no Host of its own when headers come as a list (which keeps their order).
  const flat = ['Host', target.host];
  for (const [name, value] of headers) {
    if (name.toLowerCase() === 'host') continue;
    if (name.toLowerCase() !== 'content-length') flat.push(name, value);
  }
  if (body !== null && body !== undefined) flat.push('Content-Length', String(body.byteLength));
  const lib = target.protocol === 'https:' ? https : http;
  let req;
  timer = setTimeout(() => {
    finish({ error: { case: 'timeout', message: '' } });
    req?.destroy();
  }, Math.max(1, timeoutMs));
  try {
    req = lib.request(target, { method, headers: flat, agent, ...(target.protocol === 'https:' ? { rejectUnauthorized: true, ...(ca ? { ca } : {}) } : {}) });
  } catch (e) {
    finish({ error: { case: e?.code === 'ERR_INVALID_CHAR' || e?.code === 'ERR_INVALID_HTTP_TOKEN' ? 'other' : classify(e), message: e.message } });
    return;
  }
  req.on('error', (e) => finish({ error: { case: classify(e), message: e.message } }));
  req.on('response', (res) => {
    const chunks = [];
    let size = 0;
    res.on('data', (chunk) => {
      size += chunk.length;
      if (size > maxBodyBytes) {
        finish({ error: { case: 'other', message: `the response body is larger than ${maxBodyBytes} bytes`, overflow: true } });
        res.destroy();
        req.destroy();
        return;
      }
      chunks.push(chunk);
    });
    res.on('error', (e) => finish({ error: { case: classify(e), message: e.message } }));
    res.on('end', () => {
      // A buffer of its own (never Node's shared pool), so it can be transferred.
      const out = new Uint8Array(size);
      let at = 0;
      for (const c of chunks) {
        out.set(c, at);
        at += c.length;
      }
      const raw = res.rawHeaders;
      const pairs = [];
      for (let i = 0; i + 1 < raw.length; i += 2) pairs.push([raw[i], raw[i + 1]]);
      finish({ response: { status: res.statusCode, headers: pairs, body: out } }, [out.buffer]);
    });
  });
  if (body !== null && body !== undefined) req.end(Buffer.from(body.buffer, body.byteOffset, body.byteLength));
  else req.end();
}

port.on('message', (message) => {
  try {
    exchange(message);
  } catch (e) {
    answer({ id: message?.id, error: { case: 'other', message: `the transport worker failed: ${e?.message}` } });
  }
});
