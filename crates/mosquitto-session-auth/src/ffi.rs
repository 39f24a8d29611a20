//! The C ABI shell Mosquitto 2.x loads (plugin interface version 5), and the only place in
//! the project with `unsafe` code.
//!
//! It mirrors just the structs it reads from `mosquitto_broker.h` / `mosquitto_plugin.h`
//! (their layout is checked against the real headers by `tests/ffi_layout.rs`), turns each
//! event into a call on [`Plugin`], and carries out the answer: a return code, a log line,
//! clients to disconnect, presence messages to publish. Nothing here decides anything.
//!
//! Mosquitto 2.0 runs every plugin callback on its single main thread. The plugin state
//! still sits behind a mutex so the Rust side stays sound whatever the broker does, and the
//! lock is always released before calling back into the broker: disconnecting a client
//! raises MOSQ_EVT_DISCONNECT synchronously, which takes the lock again. Publishing (the
//! presence messages) only queues the message for the broker's main loop and raises no
//! event, but it too runs without the lock.

use std::ffi::{c_char, c_int, c_long, c_void, CStr, CString};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::ptr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};

use rustix::time::{clock_gettime, ClockId};

use crate::clients::ClientHandle;
use crate::config::PluginConfig;
use crate::decisions::{Access, ConnectAttempt};
use crate::plugin::Plugin;
use crate::presence::{Outgoing, FLUSH_INTERVAL_MS};
use crate::revocation::CONTROL_TOPIC;

pub const MOSQ_PLUGIN_VERSION: c_int = 5;
/// `mosquitto_plugin_version`'s answer when the broker does not support [`MOSQ_PLUGIN_VERSION`].
pub const MOSQ_PLUGIN_VERSION_REFUSED: c_int = -1;

pub const MOSQ_ERR_SUCCESS: c_int = 0;
pub const MOSQ_ERR_INVAL: c_int = 3;
pub const MOSQ_ERR_AUTH: c_int = 11;
pub const MOSQ_ERR_ACL_DENIED: c_int = 12;
pub const MOSQ_ERR_UNKNOWN: c_int = 13;
pub const MOSQ_ERR_PLUGIN_DEFER: c_int = 17;

pub const MOSQ_EVT_RELOAD: c_int = 1;
pub const MOSQ_EVT_ACL_CHECK: c_int = 2;
pub const MOSQ_EVT_BASIC_AUTH: c_int = 3;
pub const MOSQ_EVT_CONTROL: c_int = 6;
pub const MOSQ_EVT_TICK: c_int = 9;
pub const MOSQ_EVT_DISCONNECT: c_int = 10;

pub const MOSQ_ACL_READ: c_int = 0x01;
pub const MOSQ_ACL_WRITE: c_int = 0x02;
pub const MOSQ_ACL_SUBSCRIBE: c_int = 0x04;
pub const MOSQ_ACL_UNSUBSCRIBE: c_int = 0x08;

pub const MOSQ_LOG_INFO: c_int = 0x01;
pub const MOSQ_LOG_NOTICE: c_int = 0x02;
pub const MOSQ_LOG_WARNING: c_int = 0x04;
pub const MOSQ_LOG_ERR: c_int = 0x08;

/// `struct mosquitto` (a client context): opaque, only ever handled by pointer.
#[repr(C)]
pub struct MosquittoClient {
    _opaque: [u8; 0],
}

/// `mosquitto_plugin_id_t`: opaque.
#[repr(C)]
pub struct PluginId {
    _opaque: [u8; 0],
}

/// `struct mosquitto_opt`: one `plugin_opt_<key> <value>` line.
#[repr(C)]
pub struct MosquittoOpt {
    pub key: *mut c_char,
    pub value: *mut c_char,
}

/// `struct mosquitto_evt_basic_auth`.
#[repr(C)]
pub struct EvtBasicAuth {
    pub future: *mut c_void,
    pub client: *mut MosquittoClient,
    pub username: *mut c_char,
    pub password: *mut c_char,
    pub future2: [*mut c_void; 4],
}

/// `struct mosquitto_evt_acl_check`.
#[repr(C)]
pub struct EvtAclCheck {
    pub future: *mut c_void,
    pub client: *mut MosquittoClient,
    pub topic: *const c_char,
    pub payload: *const c_void,
    pub properties: *mut c_void,
    pub access: c_int,
    pub payloadlen: u32,
    pub qos: u8,
    pub retain: bool,
    pub future2: [*mut c_void; 4],
}

/// `struct mosquitto_evt_control`: a PUBLISH to a `$CONTROL/...` topic a plugin registered.
#[repr(C)]
pub struct EvtControl {
    pub future: *mut c_void,
    pub client: *mut MosquittoClient,
    pub topic: *const c_char,
    pub payload: *const c_void,
    pub properties: *const c_void,
    pub reason_string: *mut c_char,
    pub payloadlen: u32,
    pub qos: u8,
    pub reason_code: u8,
    pub retain: bool,
    pub future2: [*mut c_void; 4],
}

/// `struct mosquitto_evt_disconnect`.
#[repr(C)]
pub struct EvtDisconnect {
    pub future: *mut c_void,
    pub client: *mut MosquittoClient,
    pub reason: c_int,
    pub future2: [*mut c_void; 4],
}

/// `struct mosquitto_evt_tick`; not read (2.0 leaves it zeroed), mirrored for the layout
/// check only.
#[repr(C)]
pub struct EvtTick {
    pub future: *mut c_void,
    pub now_ns: c_long,
    pub next_ns: c_long,
    pub now_s: libc_time_t,
    pub next_s: libc_time_t,
    pub future2: [*mut c_void; 4],
}

/// `time_t` on the 64-bit Linux targets the plugin is built for.
#[allow(non_camel_case_types)]
pub type libc_time_t = i64;

type GenericCallback = unsafe extern "C" fn(c_int, *mut c_void, *mut c_void) -> c_int;

extern "C" {
    fn mosquitto_callback_register(
        identifier: *mut PluginId,
        event: c_int,
        cb_func: GenericCallback,
        event_data: *const c_void,
        userdata: *mut c_void,
    ) -> c_int;
    fn mosquitto_callback_unregister(
        identifier: *mut PluginId,
        event: c_int,
        cb_func: GenericCallback,
        event_data: *const c_void,
    ) -> c_int;
    fn mosquitto_client_id(client: *const MosquittoClient) -> *const c_char;
    fn mosquitto_client_clean_session(client: *const MosquittoClient) -> bool;
    fn mosquitto_client_protocol_version(client: *const MosquittoClient) -> c_int;
    fn mosquitto_kick_client_by_clientid(clientid: *const c_char, with_will: bool) -> c_int;
    fn mosquitto_broker_publish_copy(
        clientid: *const c_char,
        topic: *const c_char,
        payloadlen: c_int,
        payload: *const c_void,
        qos: c_int,
        retain: bool,
        properties: *mut c_void,
    ) -> c_int;
    fn mosquitto_log_printf(level: c_int, fmt: *const c_char, ...);
    /// The client's TLS certificate as an OpenSSL `X509*` the caller frees, or null: only
    /// ever non-null on a listener with `require_certificate true`.
    fn mosquitto_client_certificate(client: *const MosquittoClient) -> *mut c_void;
}

// OpenSSL's libcrypto, which Mosquitto itself links: its symbols are there when the broker
// loads the plugin, so the plugin declares the two it needs instead of linking a second
// copy.
extern "C" {
    /// `int i2d_X509(const X509 *a, unsigned char **out)`: the DER length of `a` (null
    /// `out`), or writes it to `*out` and advances `*out` past it.
    fn i2d_X509(certificate: *const c_void, out: *mut *mut u8) -> c_int;
    fn X509_free(certificate: *mut c_void);
}

/// The DER of the client's TLS certificate, when it presented one (the certificate
/// listener only; `None` everywhere else, after one call that finds no certificate).
///
/// # Safety
/// `client` must be the broker's live client context.
unsafe fn client_certificate_der(client: *const MosquittoClient) -> Option<Vec<u8>> {
    // SAFETY: guaranteed by the caller.
    let certificate = unsafe { mosquitto_client_certificate(client) };
    if certificate.is_null() {
        return None;
    }
    // SAFETY: `certificate` is a valid X509 until it is freed below; a null output asks
    // only for the length.
    let length = unsafe { i2d_X509(certificate, ptr::null_mut()) };
    let der = usize::try_from(length)
        .ok()
        .filter(|&length| length > 0)
        .and_then(|size| {
            let mut der = vec![0_u8; size];
            let mut cursor = der.as_mut_ptr();
            // SAFETY: `der` has room for the `length` bytes i2d_X509 writes; it advances
            // `cursor`, our own copy of the pointer, not `der`.
            let written = unsafe { i2d_X509(certificate, &mut cursor) };
            (written == length).then_some(der)
        });
    // SAFETY: the broker handed us a reference of our own (SSL_get_peer_certificate), freed
    // exactly once, here, and not used afterwards.
    unsafe { X509_free(certificate) };
    der
}

/// What Mosquitto holds as `userdata` between `init` and `cleanup`.
struct Instance {
    identifier: *mut PluginId,
    plugin: Mutex<Plugin>,
    /// The second (by the coarse clock) of the last TICK that did its work. Mosquitto
    /// raises TICK on every pass of its main loop, which under load is every few messages;
    /// everything a TICK does is due at whole seconds, so only the first TICK of each
    /// second does it.
    last_tick_secs: AtomicU64,
    /// When gathered presence was last published (milliseconds on the coarse monotonic
    /// clock); it is published again [`FLUSH_INTERVAL_MS`] later.
    last_flush_ms: AtomicU64,
}

impl Instance {
    fn plugin(&self) -> MutexGuard<'_, Plugin> {
        // A panic inside a callback is caught and answered with a refusal; the state it
        // may have left half-updated is a registry of clients, never a security decision
        // in flight, so carrying on with it is sound.
        self.plugin.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

const CALLBACKS: [(c_int, GenericCallback); 6] = [
    (MOSQ_EVT_BASIC_AUTH, on_basic_auth),
    (MOSQ_EVT_ACL_CHECK, on_acl_check),
    (MOSQ_EVT_TICK, on_tick),
    (MOSQ_EVT_DISCONNECT, on_disconnect),
    (MOSQ_EVT_RELOAD, on_reload),
    (MOSQ_EVT_CONTROL, on_control),
];

/// [`CONTROL_TOPIC`] as the C string the broker keys the control callback by.
const CONTROL_TOPIC_C: &CStr = c"$CONTROL/session-auth/v1";

/// The `event_data` a callback is registered (and unregistered) with: the topic for
/// MOSQ_EVT_CONTROL, nothing for the other events.
fn event_data(event: c_int) -> *const c_void {
    if event == MOSQ_EVT_CONTROL {
        CONTROL_TOPIC_C.as_ptr().cast()
    } else {
        ptr::null()
    }
}

/// The whole seconds since the epoch on `clock` (before the epoch reads as 0: every
/// token looks alive for a moment rather than the broker stopping).
fn clock_secs(clock: ClockId) -> u64 {
    u64::try_from(clock_gettime(clock).tv_sec).unwrap_or(0)
}

/// The current time in seconds since the epoch, read straight from the clock (no
/// conversion through `SystemTime`): every ACL check reads it.
fn now_secs() -> u64 {
    clock_secs(ClockId::Realtime)
}

/// The second the kernel's last timer tick fell in: enough to tell that a new second has
/// begun, at a fraction of the cost of [`now_secs`].
fn coarse_now_secs() -> u64 {
    clock_secs(ClockId::RealtimeCoarse)
}

/// Milliseconds on the monotonic clock as of the kernel's last timer tick: cheap enough
/// for every TICK, and fine enough for [`FLUSH_INTERVAL_MS`].
fn coarse_monotonic_ms() -> u64 {
    let time = clock_gettime(ClockId::MonotonicCoarse);
    let secs = u64::try_from(time.tv_sec).unwrap_or(0);
    let ms = u64::try_from(time.tv_nsec).unwrap_or(0) / 1_000_000;
    secs.saturating_mul(1_000).saturating_add(ms)
}

/// A C string the broker hands over as text (a client id, a topic), without copying.
/// ASCII, which every topic and client id on the message path is in practice, is taken as
/// it is; anything else must be valid UTF-8.
fn c_text(text: &CStr) -> Option<&str> {
    let bytes = text.to_bytes();
    if bytes.is_ascii() {
        // SAFETY: ASCII bytes are valid UTF-8.
        Some(unsafe { std::str::from_utf8_unchecked(bytes) })
    } else {
        std::str::from_utf8(bytes).ok()
    }
}

fn log(level: c_int, message: &str) {
    let line = format!("mosquitto-session-auth: {message}").replace('\0', " ");
    let Ok(line) = CString::new(line) else {
        return;
    };
    // SAFETY: the format is a static NUL-terminated "%s" and its one argument is a valid
    // NUL-terminated string that outlives the call, which is what the printf contract needs.
    unsafe { mosquitto_log_printf(level, c"%s".as_ptr(), line.as_ptr()) };
}

/// Disconnects clients by id (without their will: a client losing its rights does not get
/// to publish one more message). Must be called without the plugin lock held.
fn kick(client_ids: &[String], why: &str) {
    for client_id in client_ids {
        let Ok(id) = CString::new(client_id.as_str()) else {
            continue;
        };
        // SAFETY: `id` is a valid NUL-terminated string for the duration of the call; the
        // broker only reads it to look the client up.
        let rc = unsafe { mosquitto_kick_client_by_clientid(id.as_ptr(), false) };
        if rc == MOSQ_ERR_SUCCESS {
            log(
                MOSQ_LOG_NOTICE,
                &format!("disconnected client {client_id:?}: {why}"),
            );
        }
    }
}

/// Publishes `messages` from the broker itself (QoS 1, to every subscriber the ACL check
/// lets receive them; never through the ACL WRITE check). Must be called without the
/// plugin lock held.
fn publish(messages: &[Outgoing]) {
    for message in messages {
        let (Ok(topic), Ok(length)) = (
            CString::new(message.topic.as_str()),
            c_int::try_from(message.payload.len()),
        ) else {
            continue;
        };
        // SAFETY: `mosquitto_broker_publish_copy` copies what it keeps before returning
        // (it duplicates the topic and copies `length` payload bytes into memory of its
        // own), so the broker never owns or frees our memory, whatever it returns: `topic`
        // is a valid NUL-terminated string and `payload` points to `length` readable bytes
        // (non-null even when empty), both alive for the call. A null client id means
        // every subscriber; null properties means none.
        let rc = unsafe {
            mosquitto_broker_publish_copy(
                ptr::null(),
                topic.as_ptr(),
                length,
                message.payload.as_ptr().cast(),
                1,
                message.retain,
                ptr::null_mut(),
            )
        };
        if rc != MOSQ_ERR_SUCCESS {
            log(
                MOSQ_LOG_WARNING,
                &format!(
                    "cannot publish on {}: error {rc}",
                    loggable(Some(&message.topic))
                ),
            );
        }
    }
}

/// Text a user controls, shortened for a log line.
fn loggable(text: Option<&str>) -> String {
    match text {
        Some(text) => format!("{:?}", text.chars().take(64).collect::<String>()),
        None => "(none)".to_owned(),
    }
}

/// Runs a callback body; a panic becomes `on_panic` instead of unwinding into C.
fn guarded(on_panic: c_int, body: impl FnOnce() -> c_int) -> c_int {
    catch_unwind(AssertUnwindSafe(body)).unwrap_or_else(|_| {
        log(
            MOSQ_LOG_ERR,
            "internal error in a callback; request refused",
        );
        on_panic
    })
}

/// # Safety
/// `ptr` must be null or point to a NUL-terminated string valid for `'a`.
unsafe fn c_str<'a>(ptr: *const c_char) -> Option<&'a CStr> {
    // SAFETY: guaranteed by the caller.
    (!ptr.is_null()).then(|| unsafe { CStr::from_ptr(ptr) })
}

/// # Safety
/// `userdata` must be the pointer `mosquitto_plugin_init` handed to the broker, not yet
/// passed to `mosquitto_plugin_cleanup`.
unsafe fn instance<'a>(userdata: *mut c_void) -> Option<&'a Instance> {
    // SAFETY: guaranteed by the caller; the Box behind it lives until cleanup.
    unsafe { userdata.cast::<Instance>().as_ref() }
}

/// The opening every event callback shares: runs `body` with the plugin instance, answering
/// `refusal` when there is none or when `body` panics.
///
/// # Safety
/// As for [`instance`].
unsafe fn with_instance(
    userdata: *mut c_void,
    refusal: c_int,
    body: impl FnOnce(&Instance) -> c_int,
) -> c_int {
    guarded(refusal, || {
        // SAFETY: guaranteed by the caller.
        match unsafe { instance(userdata) } {
            Some(instance) => body(instance),
            None => refusal,
        }
    })
}

/// [`with_instance`] for an event whose data `body` reads: the broker's `event_data` cast
/// to the struct `T` mirrored for that event; `refusal` when it is null.
///
/// # Safety
/// As for [`instance`]; `event_data` must be null or point to the `T` the broker passes
/// for the event the callback was registered for, alive for the call.
unsafe fn with_event<T>(
    userdata: *mut c_void,
    event_data: *mut c_void,
    refusal: c_int,
    body: impl FnOnce(&Instance, &T) -> c_int,
) -> c_int {
    // SAFETY: guaranteed by the caller.
    unsafe {
        with_instance(userdata, refusal, |instance| {
            // SAFETY: guaranteed by the caller.
            match event_data.cast::<T>().as_ref() {
                Some(event) => body(instance, event),
                None => refusal,
            }
        })
    }
}

/// The broker's first call: it lists the plugin interface versions it supports (Mosquitto
/// 2.0 lists 5, 4, 3, 2) and the plugin answers the one it implements, or -1 when the
/// broker does not list it, so that a broker without the v5 interface refuses to load the
/// plugin instead of calling functions it does not have.
///
/// # Safety
/// `supported_versions` must be null or point to `supported_version_count` integers, alive
/// for the call.
#[no_mangle]
pub unsafe extern "C" fn mosquitto_plugin_version(
    supported_version_count: c_int,
    supported_versions: *const c_int,
) -> c_int {
    // Nothing here can panic, so unlike the callbacks it needs no `guarded`.
    let count = usize::try_from(supported_version_count).unwrap_or(0);
    let supported: &[c_int] = if supported_versions.is_null() || count == 0 {
        &[]
    } else {
        // SAFETY: the broker passes an array of `supported_version_count` integers
        // that lives for the whole call.
        unsafe { std::slice::from_raw_parts(supported_versions, count) }
    };
    if supported.contains(&MOSQ_PLUGIN_VERSION) {
        MOSQ_PLUGIN_VERSION
    } else {
        MOSQ_PLUGIN_VERSION_REFUSED
    }
}

/// # Safety
/// Called by Mosquitto with a valid identifier, a writable `userdata` slot and
/// `option_count` valid options.
#[no_mangle]
pub unsafe extern "C" fn mosquitto_plugin_init(
    identifier: *mut PluginId,
    userdata: *mut *mut c_void,
    options: *mut MosquittoOpt,
    option_count: c_int,
) -> c_int {
    guarded(MOSQ_ERR_UNKNOWN, || {
        if userdata.is_null() {
            return MOSQ_ERR_INVAL;
        }
        let count = usize::try_from(option_count).unwrap_or(0);
        let options: &[MosquittoOpt] = if options.is_null() || count == 0 {
            &[]
        } else {
            // SAFETY: the broker passes an array of `option_count` options that lives for
            // the whole call.
            unsafe { std::slice::from_raw_parts(options, count) }
        };
        let options: Vec<(String, String)> = options
            .iter()
            .map(|option| {
                // SAFETY: each key and value is a NUL-terminated string owned by the
                // broker's configuration, alive for the whole call.
                let text = |ptr| unsafe { c_str(ptr) }.map(|s| s.to_string_lossy().into_owned());
                (
                    text(option.key).unwrap_or_default(),
                    text(option.value).unwrap_or_default(),
                )
            })
            .collect();
        let config =
            PluginConfig::from_options(options.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        let plugin = match config.and_then(|config| Plugin::start(config, now_secs())) {
            Ok(plugin) => plugin,
            Err(error) => {
                log(MOSQ_LOG_ERR, &format!("cannot start: {error}"));
                return MOSQ_ERR_INVAL;
            }
        };
        log(
            MOSQ_LOG_INFO,
            &format!(
                "started with {} key(s): {}; state file {} (sessions refused: {}, devices kicked: {}, tokens revoked: {}, persistent clients: {})",
                plugin.key_ids().len(),
                plugin.key_ids().join(", "),
                plugin.state_file().display(),
                plugin.revoked_sessions(),
                plugin.kicked_devices(),
                plugin.revoked_tokens(),
                plugin.known_clients()
            ),
        );
        let instance = Box::into_raw(Box::new(Instance {
            identifier,
            plugin: Mutex::new(plugin),
            last_tick_secs: AtomicU64::new(0),
            last_flush_ms: AtomicU64::new(0),
        }));
        for (registered, &(event, callback)) in CALLBACKS.iter().enumerate() {
            // SAFETY: `identifier` is the broker's own handle for this plugin; `instance`
            // stays valid until `mosquitto_plugin_cleanup`, which unregisters first.
            let rc = unsafe {
                mosquitto_callback_register(
                    identifier,
                    event,
                    callback,
                    event_data(event),
                    instance.cast(),
                )
            };
            if rc != MOSQ_ERR_SUCCESS {
                log(
                    MOSQ_LOG_ERR,
                    &format!("cannot register for event {event}: error {rc}"),
                );
                // SAFETY: as above; only the callbacks registered so far are removed, and the
                // box was created above and never handed out beyond them.
                unsafe {
                    unregister(identifier, &CALLBACKS[..registered]);
                    drop(Box::from_raw(instance));
                }
                return rc;
            }
        }
        // SAFETY: checked non-null above; the broker hands us this slot to fill.
        unsafe { *userdata = instance.cast() };
        MOSQ_ERR_SUCCESS
    })
}

/// # Safety
/// `identifier` must be the plugin's identifier and `callbacks` registered with it.
unsafe fn unregister(identifier: *mut PluginId, callbacks: &[(c_int, GenericCallback)]) {
    for &(event, callback) in callbacks {
        // SAFETY: guaranteed by the caller.
        unsafe { mosquitto_callback_unregister(identifier, event, callback, event_data(event)) };
    }
}

/// # Safety
/// `userdata` must be the pointer set by `mosquitto_plugin_init` (or null).
#[no_mangle]
pub unsafe extern "C" fn mosquitto_plugin_cleanup(
    userdata: *mut c_void,
    _options: *mut MosquittoOpt,
    _option_count: c_int,
) -> c_int {
    guarded(MOSQ_ERR_UNKNOWN, || {
        if userdata.is_null() {
            return MOSQ_ERR_SUCCESS;
        }
        let instance = userdata.cast::<Instance>();
        // SAFETY: `userdata` came from Box::into_raw in init and is still alive here.
        if let Some(instance) = unsafe { instance.as_ref() } {
            if let Err(error) = instance.plugin().flush_state(now_secs()) {
                log(MOSQ_LOG_ERR, &error.to_string());
            }
        }
        // SAFETY: `userdata` came from Box::into_raw in init; once the callbacks are
        // unregistered nothing else refers to it, so it is freed exactly once here.
        unsafe {
            unregister((*instance).identifier, &CALLBACKS);
            drop(Box::from_raw(instance));
        }
        MOSQ_ERR_SUCCESS
    })
}

unsafe extern "C" fn on_basic_auth(
    _event: c_int,
    event_data: *mut c_void,
    userdata: *mut c_void,
) -> c_int {
    // SAFETY: registered for MOSQ_EVT_BASIC_AUTH with our instance as userdata; the broker passes a valid
    // `mosquitto_evt_basic_auth` as the event data, alive for the call.
    unsafe { with_event(userdata, event_data, MOSQ_ERR_AUTH, basic_auth) }
}

fn basic_auth(instance: &Instance, event: &EvtBasicAuth) -> c_int {
    // SAFETY: the username, password and client id are NUL-terminated strings owned by
    // the client context, which outlives the callback.
    let (username, password, client_id) = unsafe {
        (
            c_str(event.username),
            c_str(event.password),
            c_str(mosquitto_client_id(event.client)),
        )
    };
    let username = username.map(|s| s.to_str().map_err(|_| ()));
    let client_id = client_id.and_then(|s| s.to_str().ok());
    let password = match password.map(CStr::to_str) {
        Some(Err(_)) => {
            log(
                MOSQ_LOG_NOTICE,
                &format!(
                    "refused client {}: the password is not UTF-8 text",
                    loggable(client_id)
                ),
            );
            return MOSQ_ERR_AUTH;
        }
        Some(Ok(token)) => Some(token),
        None => None,
    };
    let Ok(username) = username.transpose() else {
        log(
            MOSQ_LOG_NOTICE,
            &format!(
                "refused client {}: the username is not UTF-8 text",
                loggable(client_id)
            ),
        );
        return MOSQ_ERR_AUTH;
    };
    // SAFETY: `event.client` is the broker's live client context for this CONNECT.
    let (clean_session, protocol_version, certificate) = unsafe {
        (
            mosquitto_client_clean_session(event.client),
            mosquitto_client_protocol_version(event.client),
            client_certificate_der(event.client),
        )
    };
    let attempt = ConnectAttempt {
        username,
        password,
        client_id,
        // MQTT 5 keeps a session past the disconnect whenever its session expiry is
        // above 0, which the plugin API does not show: assume it does.
        persistent: !clean_session || protocol_version == 5,
        certificate: certificate.as_deref(),
    };
    let outcome =
        instance
            .plugin()
            .authenticate(ClientHandle(event.client as usize), attempt, now_secs());
    match outcome {
        Ok(presence) => {
            publish(&presence);
            MOSQ_ERR_SUCCESS
        }
        Err(refusal) => {
            log(
                MOSQ_LOG_NOTICE,
                &format!(
                    "refused client {} (username {}): {refusal}",
                    loggable(client_id),
                    loggable(username)
                ),
            );
            MOSQ_ERR_AUTH
        }
    }
}

unsafe extern "C" fn on_acl_check(
    _event: c_int,
    event_data: *mut c_void,
    userdata: *mut c_void,
) -> c_int {
    // SAFETY: registered for MOSQ_EVT_ACL_CHECK with our instance as userdata; the broker passes a valid
    // `mosquitto_evt_acl_check` as the event data, alive for the call.
    unsafe { with_event(userdata, event_data, MOSQ_ERR_ACL_DENIED, acl_check) }
}

fn acl_check(instance: &Instance, event: &EvtAclCheck) -> c_int {
    let access = match event.access {
        MOSQ_ACL_SUBSCRIBE => Access::Subscribe,
        MOSQ_ACL_UNSUBSCRIBE => Access::Unsubscribe,
        MOSQ_ACL_WRITE => Access::Publish,
        MOSQ_ACL_READ => Access::Receive,
        _ => return MOSQ_ERR_ACL_DENIED,
    };
    // SAFETY: the topic is a NUL-terminated string owned by the broker for the call.
    let Some(topic) = (unsafe { c_str(event.topic) }).and_then(c_text) else {
        return MOSQ_ERR_ACL_DENIED;
    };
    // SAFETY: the client id is a NUL-terminated string owned by the client context (a
    // connected client, or an offline one whose will or queue is being handled), which
    // outlives the callback.
    let Some(client_id) = (unsafe { c_str(mosquitto_client_id(event.client)) }).and_then(c_text)
    else {
        return MOSQ_ERR_ACL_DENIED;
    };
    let allowed = instance
        .plugin()
        .may_access(client_id, access, topic, now_secs());
    if allowed {
        MOSQ_ERR_SUCCESS
    } else {
        MOSQ_ERR_ACL_DENIED
    }
}

unsafe extern "C" fn on_tick(
    _event: c_int,
    _event_data: *mut c_void,
    userdata: *mut c_void,
) -> c_int {
    // SAFETY: registered for MOSQ_EVT_TICK with our instance as userdata.
    unsafe { with_instance(userdata, MOSQ_ERR_SUCCESS, tick) }
}

fn tick(instance: &Instance) -> c_int {
    let ms = coarse_monotonic_ms();
    if ms.saturating_sub(instance.last_flush_ms.load(Ordering::Relaxed)) >= FLUSH_INTERVAL_MS {
        instance.last_flush_ms.store(ms, Ordering::Relaxed);
        // The lock is dropped at the end of this statement, before the broker is called.
        let presence = instance.plugin().flush_presence();
        publish(&presence);
    }
    // The coarse clock says whether a new second has begun (it may see it up to a kernel
    // tick late, which only delays the sweep as much); the work itself uses the exact time.
    let second = coarse_now_secs();
    if instance.last_tick_secs.swap(second, Ordering::Relaxed) == second {
        return MOSQ_ERR_SUCCESS;
    }
    let now = now_secs();
    // The lock is dropped at the end of this statement, before the kicks re-enter.
    let tick = instance.plugin().tick(now);
    if let Some(error) = tick.save_error {
        log(MOSQ_LOG_ERR, &format!("{error}; retrying"));
    }
    kick(&tick.expired, "token expired");
    let presence = instance.plugin().sweep_presence(now);
    publish(&presence);
    MOSQ_ERR_SUCCESS
}

unsafe extern "C" fn on_disconnect(
    _event: c_int,
    event_data: *mut c_void,
    userdata: *mut c_void,
) -> c_int {
    // SAFETY: registered for MOSQ_EVT_DISCONNECT with our instance as userdata; the broker passes a valid
    // `mosquitto_evt_disconnect` as the event data, alive for the call.
    unsafe { with_event(userdata, event_data, MOSQ_ERR_SUCCESS, disconnect) }
}

fn disconnect(instance: &Instance, event: &EvtDisconnect) -> c_int {
    // SAFETY: the client id is a NUL-terminated string owned by the client context,
    // which outlives the callback; it is null for a client refused at CONNECT.
    let Some(Ok(client_id)) =
        (unsafe { c_str(mosquitto_client_id(event.client)) }).map(CStr::to_str)
    else {
        return MOSQ_ERR_SUCCESS;
    };
    let presence = instance.plugin().client_disconnected(
        ClientHandle(event.client as usize),
        client_id,
        now_secs(),
    );
    publish(&presence);
    MOSQ_ERR_SUCCESS
}

unsafe extern "C" fn on_reload(
    _event: c_int,
    _event_data: *mut c_void,
    userdata: *mut c_void,
) -> c_int {
    // Mosquitto 2.0 stops running the remaining reload steps (other plugins, its own
    // password and ACL files) when a RELOAD callback answers anything but DEFER, so DEFER
    // is the answer whatever happened here.
    // SAFETY: registered for MOSQ_EVT_RELOAD with our instance as userdata.
    unsafe { with_instance(userdata, MOSQ_ERR_PLUGIN_DEFER, reload) }
}

fn reload(instance: &Instance) -> c_int {
    let outcome = instance.plugin().reload_keys(now_secs());
    match outcome {
        Ok(reloaded) => {
            log(
                MOSQ_LOG_INFO,
                &format!("reloaded {} key(s)", reloaded.key_count),
            );
            kick(&reloaded.revoked_clients, "its token's key was withdrawn");
        }
        Err(error) => log(
            MOSQ_LOG_WARNING,
            &format!("reload failed, keeping the previous keys: {error}"),
        ),
    }
    MOSQ_ERR_PLUGIN_DEFER
}

unsafe extern "C" fn on_control(
    _event: c_int,
    event_data: *mut c_void,
    userdata: *mut c_void,
) -> c_int {
    // SAFETY: registered for MOSQ_EVT_CONTROL with our instance as userdata; the broker passes a valid
    // `mosquitto_evt_control` as the event data, alive for the call.
    unsafe { with_event(userdata, event_data, MOSQ_ERR_SUCCESS, control) }
}

fn control(instance: &Instance, event: &EvtControl) -> c_int {
    let length = usize::try_from(event.payloadlen).unwrap_or(0);
    let payload: &[u8] = if event.payload.is_null() || length == 0 {
        &[]
    } else {
        // SAFETY: the broker's message store holds `payloadlen` bytes at `payload` for
        // the whole call.
        unsafe { std::slice::from_raw_parts(event.payload.cast::<u8>(), length) }
    };
    // SAFETY: the client id is a NUL-terminated string owned by the client context,
    // which outlives the callback.
    let sender = unsafe { c_str(mosquitto_client_id(event.client)) }
        .map(|id| id.to_string_lossy().into_owned());
    // The refusals are saved before anyone is disconnected, and before the broker
    // acknowledges the message (it sends the PUBACK after this callback returns). The
    // lock is dropped at the end of this block, before the kicks re-enter.
    let outcome = {
        let now = now_secs();
        let mut plugin = instance.plugin();
        let outcome = plugin.control(sender.as_deref(), payload, now);
        if outcome.is_ok() && plugin.state_changed {
            if let Err(error) = plugin.save_state(now) {
                log(
                    MOSQ_LOG_ERR,
                    &format!("{error}; the refusals are in force but not yet saved, retrying"),
                );
            }
        }
        outcome
    };
    let outcome = match outcome {
        Ok(outcome) => outcome,
        Err(refusal) => {
            log(
                MOSQ_LOG_WARNING,
                &format!(
                    "ignored a message on {CONTROL_TOPIC} from client {}: {refusal}",
                    loggable(sender.as_deref())
                ),
            );
            return MOSQ_ERR_SUCCESS;
        }
    };
    if !outcome.sessions.is_empty() {
        log(
            MOSQ_LOG_NOTICE,
            &format!(
                "client {} closed session(s) {:?}: disconnecting {} client(s)",
                loggable(sender.as_deref()),
                outcome.sessions,
                outcome.closed_clients.len()
            ),
        );
    }
    kick(&outcome.closed_clients, "its session was closed");
    if !outcome.kicked_devices.is_empty() {
        log(
            MOSQ_LOG_NOTICE,
            &format!(
                "client {} kicked device(s) {:?}: disconnecting {} client(s)",
                loggable(sender.as_deref()),
                outcome.kicked_devices,
                outcome.kicked_clients.len()
            ),
        );
    }
    kick(&outcome.kicked_clients, "the device was kicked");
    if !outcome.revoked_tokens.is_empty() {
        log(
            MOSQ_LOG_NOTICE,
            &format!(
                "client {} revoked token(s) {:?}: disconnecting {} client(s)",
                loggable(sender.as_deref()),
                outcome.revoked_tokens,
                outcome.revoked_clients.len()
            ),
        );
    }
    kick(&outcome.revoked_clients, "its token was revoked");
    // Taken after the disconnects above, which reported (and wrote) their own presence.
    let presence = {
        let mut plugin = instance.plugin();
        let mut presence = plugin.clear_presence(&outcome.sessions);
        if let Some(request) = &outcome.sync {
            presence.extend(plugin.answer_sync(request));
        }
        presence
    };
    publish(&presence);
    MOSQ_ERR_SUCCESS
}

#[cfg(test)]
mod tests {
    use super::*;

    fn negotiated(supported: &[c_int]) -> c_int {
        let count = c_int::try_from(supported.len()).expect("a short list");
        // SAFETY: the pointer and count describe `supported`, alive for the call.
        unsafe { mosquitto_plugin_version(count, supported.as_ptr()) }
    }

    #[test]
    fn the_plugin_speaks_version_5_only_to_a_broker_that_lists_it() {
        assert_eq!(negotiated(&[5, 4, 3, 2]), MOSQ_PLUGIN_VERSION);
        assert_eq!(negotiated(&[2, 5]), MOSQ_PLUGIN_VERSION);
        assert_eq!(negotiated(&[4, 3, 2]), MOSQ_PLUGIN_VERSION_REFUSED);
        assert_eq!(negotiated(&[6]), MOSQ_PLUGIN_VERSION_REFUSED);
        assert_eq!(negotiated(&[]), MOSQ_PLUGIN_VERSION_REFUSED);
        // SAFETY: a null list with a count is the broker's fault; it must not be read.
        let from_null = unsafe { mosquitto_plugin_version(3, std::ptr::null()) };
        assert_eq!(from_null, MOSQ_PLUGIN_VERSION_REFUSED);
        // SAFETY: a negative count is never read either.
        let negative = unsafe { mosquitto_plugin_version(-1, [5].as_ptr()) };
        assert_eq!(negative, MOSQ_PLUGIN_VERSION_REFUSED);
    }

    #[test]
    fn broker_text_is_taken_as_is_when_ascii_and_checked_otherwise() {
        assert_eq!(c_text(c"/4242/lamp"), Some("/4242/lamp"));
        assert_eq!(c_text(c""), Some(""));
        assert_eq!(
            c_text(c"/4242/\xc3\xa9t\xc3\xa9"),
            Some("/4242/\u{e9}t\u{e9}")
        );
        assert_eq!(c_text(c"/4242/\xff"), None, "not UTF-8");
        assert_eq!(c_text(c"/4242/\xc3"), None, "a cut character");
    }

    #[test]
    fn the_coarse_clock_trails_the_exact_one_by_less_than_a_second() {
        let coarse = coarse_now_secs();
        let exact = now_secs();
        let system = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("after the epoch")
            .as_secs();
        assert!(
            exact <= system && system <= exact + 1,
            "{exact} vs {system}"
        );
        assert!(
            coarse <= exact && exact <= coarse + 1,
            "{coarse} vs {exact}"
        );
    }

    #[test]
    fn the_control_topic_c_string_is_the_control_topic() {
        assert_eq!(CONTROL_TOPIC_C.to_str(), Ok(CONTROL_TOPIC));
    }
}
