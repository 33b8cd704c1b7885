"use strict";
// Test-only preload: `node --require tests/support/bind-loopback.cjs server.js ...`
//
// Some third-party MCP servers (e.g. @modelcontextprotocol/server-everything in
// streamableHttp mode) call `app.listen(PORT)` with no host, which binds every
// interface. The test suite must only ever listen on loopback, so this preload
// rewrites every TCP `net.Server#listen` call (http/https servers inherit it) to
// bind 127.0.0.1, whatever host the program asked for. Unix-socket/pipe paths
// and pre-made handles are passed through untouched.

const net = require("node:net");

const LOOPBACK_HOST = "127.0.0.1";
const originalListen = net.Server.prototype.listen;

function isPortLike(value) {
  return (
    value === undefined ||
    value === null ||
    typeof value === "number" ||
    (typeof value === "string" && /^\s*\d+\s*$/.test(value))
  );
}

function isHandleLike(value) {
  return typeof value === "object" && value !== null && ("_handle" in value || "fd" in value);
}

net.Server.prototype.listen = function listenOnLoopback(...args) {
  const callback = typeof args[args.length - 1] === "function" ? args.pop() : undefined;
  const first = args[0];
  let options;

  if (typeof first === "object" && first !== null && !isHandleLike(first)) {
    if (first.path !== undefined) {
      return originalListen.apply(this, callback ? [...args, callback] : args);
    }
    options = { ...first, host: LOOPBACK_HOST };
  } else if (isPortLike(first)) {
    // listen([port[, host[, backlog]]]) or listen([port[, backlog]])
    options = { port: first === undefined || first === null ? 0 : Number(first), host: LOOPBACK_HOST };
    const backlog = typeof args[1] === "number" ? args[1] : args[2];
    if (typeof backlog === "number") {
      options.backlog = backlog;
    }
  } else {
    // Pipe path or handle: not a TCP listen, leave it alone.
    return originalListen.apply(this, callback ? [...args, callback] : args);
  }

  return callback ? originalListen.call(this, options, callback) : originalListen.call(this, options);
};
