// eureka-js-client, configured as an application configures it, for test_eureka_clients.py.
//
// node client.js CONFIG_JSON starts one client (register, then heartbeats and registry fetches
// on their intervals), prints "ready" once start() has called back, then answers commands read
// on stdin, one JSON object a line, each with "reply <n> <json>" on stdout:
//   {"n": 1, "cmd": "view", "vips": [...], "apps": [...]}: the client's view, through its
//     public getters getInstancesByVipAddress and getInstancesByAppId;
//   {"n": 2, "cmd": "call", "app": "ORDERS", "path": "/hello"} (or "vip" for "app"): an
//     instance picked from the client's cache by getInstancesByAppId (getInstancesByVipAddress),
//     called at its ipAddr and port.$ with Node's http module, as an application calls a
//     service it discovered; the answer is the instance called, its URL, status and JSON body;
//   {"n": 3, "cmd": "stop"}: stop() (which deregisters), then exit.
// Every view also says how often the client registered, heartbeated and fetched the full
// registry (its events), and what it logged at warn level or above (its logger), so that a
// failure a client only logs fails the test.
'use strict';

const http = require('http');
const readline = require('readline');
const { Eureka } = require('eureka-js-client');

const config = JSON.parse(process.argv[2]);
const counts = { registered: 0, heartbeats: 0, fullFetches: 0, deregistered: 0 };
const problems = [];

// The client's logger interface; the getters' "Unable to retrieve instances" warnings are
// answers (an empty list), not problems.
const logger = {
  level() {},
  debug() {},
  info() {},
  warn(...args) {
    const text = args.map(String).join(' ');
    if (!text.startsWith('Unable to retrieve')) problems.push(`warn: ${text}`);
  },
  error(...args) {
    problems.push(`error: ${args.map(String).join(' ')}`);
  },
};

const client = new Eureka({
  logger,
  // No eureka-client.yml is read from the working directory.
  cwd: __dirname,
  filename: 'no-such-eureka-client-config',
  shouldUseDelta: config.shouldUseDelta,
  requestMiddleware: (requestOpts, done) => {
    requestOpts.auth = { user: 'svc', password: config.token };
    done(requestOpts);
  },
  instance: {
    app: config.app,
    instanceId: config.instanceId,
    hostName: 'localhost',
    ipAddr: '127.0.0.1',
    port: { $: config.port, '@enabled': 'true' },
    vipAddress: config.app.toLowerCase(),
    statusPageUrl: `http://localhost:${config.port}/info`,
    healthCheckUrl: `http://localhost:${config.port}/health`,
    homePageUrl: `http://localhost:${config.port}/`,
    dataCenterInfo: {
      '@class': 'com.netflix.appinfo.InstanceInfo$DefaultDataCenterInfo',
      name: 'MyOwn',
    },
    leaseInfo: { renewalIntervalInSecs: config.intervalSeconds, durationInSecs: config.leaseSeconds },
  },
  eureka: {
    host: '127.0.0.1',
    port: config.serverPort,
    servicePath: '/eureka/apps/',
    heartbeatInterval: config.intervalSeconds * 1000,
    registryFetchInterval: config.intervalSeconds * 1000,
  },
});

client.on('registered', () => { counts.registered += 1; });
client.on('heartbeat', () => { counts.heartbeats += 1; });
client.on('registryUpdated', () => { counts.fullFetches += 1; });
client.on('deregistered', () => { counts.deregistered += 1; });

function describe(instance) {
  return {
    app: instance.app,
    instanceId: instance.instanceId,
    hostName: instance.hostName,
    port: instance.port.$,
    status: instance.status,
  };
}

function view(command) {
  const byVip = {};
  for (const vip of command.vips) byVip[vip] = client.getInstancesByVipAddress(vip).map(describe);
  const byApp = {};
  for (const app of command.apps) byApp[app] = client.getInstancesByAppId(app).map(describe);
  return { byVip, byApp, counts, problems };
}

// Calls an instance that the client's cache holds, picked at random as a load-balancing
// application would; answers through done(error, answer).
function call(command, done) {
  const found = command.vip
    ? client.getInstancesByVipAddress(command.vip)
    : client.getInstancesByAppId(command.app);
  if (found.length === 0) {
    done(`no instance of ${command.vip || command.app} in the cache`);
    return;
  }
  const instance = found[Math.floor(Math.random() * found.length)];
  const url = `http://${instance.ipAddr}:${instance.port.$}${command.path}`;
  const request = http.get(url, { timeout: 5000 }, (response) => {
    const chunks = [];
    response.on('data', (chunk) => chunks.push(chunk));
    response.on('end', () => {
      const text = Buffer.concat(chunks).toString();
      try {
        const body = JSON.parse(text);
        done(null, { instance: describe(instance), url, status: response.statusCode, body });
      } catch (error) {
        done(`${url} answered ${response.statusCode} ${text.slice(0, 200)}`);
      }
    });
  });
  request.on('timeout', () => request.destroy(new Error(`${url} timed out`)));
  request.on('error', (error) => done(`${url}: ${error}`));
}

function reply(n, answer) {
  process.stdout.write(`reply ${n} ${JSON.stringify(answer)}\n`);
}

client.start((error) => {
  if (error) {
    process.stdout.write(`start failed ${error}\n`);
    process.exit(1);
  }
  process.stdout.write('ready\n');
  let stopping = false;
  const lines = readline.createInterface({ input: process.stdin });
  lines.on('line', (line) => {
    const command = JSON.parse(line);
    if (command.cmd === 'view') {
      reply(command.n, { ok: view(command) });
    } else if (command.cmd === 'call') {
      call(command, (error, answer) => reply(command.n, error ? { error } : { ok: answer }));
    } else if (command.cmd === 'stop') {
      stopping = true;
      client.stop((stopError) => {
        reply(command.n, stopError ? { error: String(stopError) } : { ok: { counts } });
        process.exit(0);
      });
    } else {
      reply(command.n, { error: `unknown command ${command.cmd}` });
    }
  });
  // The test went away without a stop: leave as a stopping application does.
  lines.on('close', () => {
    if (!stopping) client.stop(() => process.exit(0));
  });
});
