// nodemailer into an SMTP sink on 127.0.0.1, as the Electron app this project replaces sent:
// one sendMail({from, to, subject, html, text}) per recipient, each message rendered from a
// template with the recipient's fields. Prints one JSON line: {"sent", "seconds", "first_ms"}.
//
//   node benchmarks/bench_nodemailer.js PORT COUNT pool|per-message [CONNECTIONS] [nodelay|default] [both|html]
//
// pool: nodemailer's pool of CONNECTIONS; per-message: a new connection per message, CONNECTIONS
// of them at a time. html: an HTML body only (as most users write), else HTML and text.
// nodelay: nodemailer's sockets get TCP_NODELAY (through its getSocket option). With the
// default sockets, nodemailer's separate small writes at the end of a message meet the
// receiver's delayed ACK on Linux and each message waits ~40 ms: its best case is nodelay.
'use strict';
const net = require('net');
const path = require('path');
const nodemailer = require(path.join(__dirname, '..', 'bench', 'node_modules', 'nodemailer'));

const [port, count, mode, conns] = [Number(process.argv[2]), Number(process.argv[3]), process.argv[4], Number(process.argv[5] || 5)];
const nodelay = (process.argv[6] || 'nodelay') === 'nodelay';
const htmlOnly = process.argv[7] === 'html';
function getSocket(options, callback) {
  const socket = net.connect(options.port, options.host);
  socket.setNoDelay(true);
  socket.once('connect', () => callback(null, { connection: socket }));
  socket.once('error', callback);
}
const body = require('./bench_message.json');

function fill(template, fields) {
  return template.replace(/\{\{ (\w+) \}\}/g, (_, name) => String(fields[name] ?? ''));
}
function escapeHtml(s) {
  return s.replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' }[c]));
}
function row(i) {
  return { email: `user${i}@example${i % 97}.org`, first_name: i % 7 === 0 ? `Jörg ${i}` : `Ann ${i}`, code: `C${String(i).padStart(6, '0')}`, city: 'Köln' };
}
function message(i) {
  const f = row(i);
  const html = {};
  for (const [k, v] of Object.entries(f)) html[k] = escapeHtml(v);
  const msg = { from: 'Me <me@example.com>', to: `${f.first_name} <${f.email}>`, subject: fill(body.subject, f), html: fill(body.html, html) };
  if (!htmlOnly) msg.text = fill(body.text, f);
  return msg;
}

async function main() {
  const options = { host: '127.0.0.1', port, secure: false, ignoreTLS: true, ...(nodelay ? { getSocket } : {}) };
  const started = process.hrtime.bigint();
  let first = null;
  let sent = 0;
  const done = () => { sent += 1; if (first === null) first = Number(process.hrtime.bigint() - started) / 1e6; };
  if (mode === 'pool') {
    const transport = nodemailer.createTransport({ ...options, pool: true, maxConnections: conns, maxMessages: Infinity });
    // Keep the pool busy without queueing all at once: a window of sends in flight.
    let next = 0;
    const worker = async () => {
      while (next < count) {
        const i = next++;
        await transport.sendMail(message(i));
        done();
      }
    };
    await Promise.all(Array.from({ length: conns * 4 }, worker));
    transport.close();
  } else {
    let next = 0;
    const worker = async () => {
      while (next < count) {
        const i = next++;
        const transport = nodemailer.createTransport(options); // a new connection per message
        await transport.sendMail(message(i));
        done();
        transport.close();
      }
    };
    await Promise.all(Array.from({ length: conns }, worker));
  }
  const seconds = Number(process.hrtime.bigint() - started) / 1e9;
  process.stdout.write(JSON.stringify({ sent, seconds, first_ms: first }) + '\n');
}

main().catch((err) => { process.stderr.write(String(err && err.stack || err) + '\n'); process.exit(1); });
