// The demo page: join a session through the public API, then connect to the broker over
// MQTT-over-WebSocket at /mqtt with the issued token and chat inside the session.
"use strict";

const logArea = document.getElementById("log");
const joinForm = document.getElementById("join");
const sendForm = document.getElementById("send");
let client = null;
let topicRoot = "";

function say(line) {
  logArea.textContent += `${new Date().toLocaleTimeString()}  ${line}\n`;
}

joinForm.addEventListener("submit", async (event) => {
  event.preventDefault();
  const form = new FormData(joinForm);
  const id = form.get("id").trim();
  const name = form.get("client").trim();
  let grant;
  try {
    const response = await fetch(`/api/v1/sessions/${encodeURIComponent(id)}/join`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ pin: form.get("pin").trim(), client: name }),
    });
    grant = await response.json();
    if (!response.ok) {
      say(`join refused: ${grant.error ? grant.error.message : response.status}`);
      return;
    }
  } catch (error) {
    say(`join failed: ${error}`);
    return;
  }
  topicRoot = grant.topic_root;
  say(`joined session ${grant.session_id} as ${grant.username}; connecting…`);

  if (client) client.close();
  const scheme = location.protocol === "https:" ? "wss:" : "ws:";
  client = new TinyMqttClient(`${scheme}//${location.host}/mqtt`, {
    clientId: grant.client_id,
    username: grant.username,
    password: grant.token,
  });
  client.onconnect = () => {
    say(`connected; subscribed to ${topicRoot}#`);
    client.subscribe(`${topicRoot}#`);
    document.getElementById("topic-root").textContent = topicRoot;
    sendForm.hidden = false;
  };
  client.onmessage = (topic, message) => say(`${topic}: ${message}`);
  client.onerror = (error) => say(`error: ${error}`);
  client.onclose = (code) => say(`disconnected (${code})`);
});

sendForm.addEventListener("submit", (event) => {
  event.preventDefault();
  const form = new FormData(sendForm);
  client.publish(`${topicRoot}${form.get("topic").trim()}`, form.get("message"));
  sendForm.elements.message.value = "";
});
