/*
 * grpc_model_key: an Envoy dynamic module (HTTP filter) that reads the model a TF Serving gRPC request
 * names and writes tfscache's fast-path route key into the stream's filter state.
 *
 * What it does, per request stream:
 *   1. Request headers: only when :path is one of PredictionService/{Predict,Classify,Regress,
 *      GetModelMetadata} or ModelService/GetModelStatus, the content-type is gRPC (Envoy's own rule:
 *      "application/grpc", or that followed by '+' or ';') and a body follows, the headers are held
 *      (StopIteration) until the first gRPC message has arrived. Any other request passes untouched.
 *   2. Request body: the body is left in Envoy's buffers (StopIterationAndBuffer) until the first gRPC
 *      frame (1 byte compressed flag, 4 bytes big-endian length L, L bytes) is complete, and read in place
 *      from Envoy's chunks, never copied. A compressed frame, a frame larger than the stream's buffer
 *      limit, or the end of the stream before the frame is complete: give up.
 *   3. The message is parsed as protobuf, with protobuf's merge rules: top-level field 1 is ModelSpec
 *      (every occurrence merges into one); in it, name (1), version (2, an Int64Value whose field 1 is the
 *      int64 value) and version_label (4) are read; version and version_label are a oneof, so setting one
 *      clears the other; later scalars win. Every other field is skipped by its wire type. Groups, bad
 *      varints, lengths past the end, field number 0, or a known field with another wire type: give up.
 *   4. Only for a name of 1..255 characters of [A-Za-z0-9._-], no non-empty version_label, and no version
 *      or a version >= 1, the key
 *          ["NAME"]|[]|[]            or            ["NAME"]|["VERSION"]|[]
 *      (tfscache's FastKey.grpc_key) is written as a string filter-state object under the configured
 *      name, the route cache is cleared (so the route is chosen again, by a matcher on that object), and
 *      the stream continues.
 *   "Give up" means: write nothing and let the stream continue unchanged (tfscache's slow path answers
 *   it). The module never rejects a request, never changes its headers or body, and keeps no state
 *   shared between worker threads (one small allocation per stream, freed with the stream).
 *
 * Filter configuration (DynamicModuleFilter): filter_name "grpc_model_key"; filter_config a
 * google.protobuf.StringValue holding the filter-state key to write (tfscache: "tfscache.model_key").
 *
 * ABI: Envoy's dynamic-modules C ABI (source/extensions/dynamic_modules/abi/abi.h), as built into Envoy
 * 1.40.0 (commit 9e5580933739775e8bce696a57a2e1bc99368f23). The few types and prototypes used are
 * declared below, written for this file; each callback's signature and enum value was checked against
 * the exported code of that Envoy binary, and every envoy_dynamic_module_on_http_filter_* hook exported
 * here is one that Envoy 1.40 refuses to load an HTTP filter module without. The ABI version string
 * returned, "v0.2.0", is the one Envoy 1.40.0 logs as matched (another version only draws a warning).
 *
 * Build (C11, libc only; the callbacks resolve against the Envoy binary when it loads the module):
 *     cc -O2 -fPIC -shared -o libtfscache_grpc_key.so grpc_model_key.c
 */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* ----- The ABI: types ------------------------------------------------------------------------------ */

/* envoy_dynamic_module_type_envoy_buffer: bytes owned by Envoy (valid until the current hook returns). */
typedef struct {
  const char *ptr;
  size_t length;
} envoy_span;

/* envoy_dynamic_module_type_module_buffer: bytes owned by the module (Envoy copies what it keeps). */
typedef struct {
  const char *ptr;
  size_t length;
} module_span;

/* envoy_dynamic_module_type_http_header_type */
enum { HEADER_TYPE_REQUEST = 0 };

/* envoy_dynamic_module_type_http_body_type */
enum { BODY_RECEIVED_REQUEST = 0, BODY_BUFFERED_REQUEST = 1 };

/* envoy_dynamic_module_type_on_http_filter_request_headers_status (Envoy's FilterHeadersStatus) */
enum { HEADERS_CONTINUE = 0, HEADERS_STOP_ITERATION = 1 };

/* envoy_dynamic_module_type_on_http_filter_request_body_status (Envoy's FilterDataStatus) */
enum { BODY_CONTINUE = 0, BODY_STOP_ITERATION_AND_BUFFER = 1 };

/* The trailers and local-reply statuses: Continue is 0 in each. */
enum { STATUS_CONTINUE = 0 };

/* ----- The ABI: callbacks (exported by Envoy) ------------------------------------------------------- */

bool envoy_dynamic_module_callback_http_get_header(void *filter_envoy, int header_type, module_span key,
                                                   envoy_span *result, size_t index, size_t *count);
bool envoy_dynamic_module_callback_http_received_buffered_request_body(void *filter_envoy);
size_t envoy_dynamic_module_callback_http_get_body_chunks_size(void *filter_envoy, int body_type);
bool envoy_dynamic_module_callback_http_get_body_chunks(void *filter_envoy, int body_type,
                                                        envoy_span *chunks);
uint64_t envoy_dynamic_module_callback_http_get_buffer_limit(void *filter_envoy);
bool envoy_dynamic_module_callback_http_set_filter_state_bytes(void *filter_envoy, module_span key,
                                                               module_span value);
void envoy_dynamic_module_callback_http_clear_route_cache(void *filter_envoy);

/* ----- Limits and constants -------------------------------------------------------------------------- */

#define MODULE_ABI_VERSION "v0.2.0"
#define GRPC_PREFIX_BYTES 5
#define MAX_NAME_BYTES 255
#define MAX_STATE_KEY_BYTES 256
/* Chunk descriptors read without allocating; a body in more chunks gets a heap array for that call. */
#define STACK_CHUNKS 32
/* The longest key: ["NAME"]|["VERSION"]|[] with 255 name bytes and 19 digits. */
#define MAX_KEY_BYTES (MAX_NAME_BYTES + 19 + 16)

static const char FILTER_NAME[] = "grpc_model_key";
static const char GRPC_CONTENT_TYPE[] = "application/grpc";
static const char *const MODEL_PATHS[] = {
    "/tensorflow.serving.PredictionService/Predict",
    "/tensorflow.serving.PredictionService/Classify",
    "/tensorflow.serving.PredictionService/Regress",
    "/tensorflow.serving.PredictionService/GetModelMetadata",
    "/tensorflow.serving.ModelService/GetModelStatus",
};

/* Protobuf wire types. */
enum { WT_VARINT = 0, WT_FIXED64 = 1, WT_LEN = 2, WT_GROUP_START = 3, WT_GROUP_END = 4, WT_FIXED32 = 5 };

/* ----- Configuration and per-stream state ------------------------------------------------------------ */

typedef struct {
  size_t key_length;
  char key[MAX_STATE_KEY_BYTES];
} filter_config;

typedef enum {
  PHASE_PASS = 0,    /* nothing (more) to do on this stream */
  PHASE_WAITING = 1, /* headers held, reading the first gRPC frame */
} stream_phase;

typedef struct {
  const filter_config *config;
  stream_phase phase;
} stream_state;

/* ----- Reading a body in Envoy's chunks, in place ---------------------------------------------------- */

/* A position in a sequence of chunks; `pos` counts bytes from the start of the body. */
typedef struct {
  const envoy_span *chunks;
  size_t count;
  size_t index;  /* current chunk */
  size_t offset; /* within the current chunk */
  size_t pos;
} cursor;

static void cursor_settle(cursor *c) {
  while (c->index < c->count && c->offset >= c->chunks[c->index].length) {
    c->offset = 0;
    c->index++;
  }
}

/* One byte at the cursor, if the region ending at `end` has one. */
static bool read_byte(cursor *c, size_t end, uint8_t *out) {
  if (c->pos >= end) {
    return false;
  }
  cursor_settle(c);
  if (c->index >= c->count) {
    return false;
  }
  *out = (uint8_t)c->chunks[c->index].ptr[c->offset];
  c->offset++;
  c->pos++;
  return true;
}

/* Moves `n` bytes on, copying them to `out` unless it is NULL (a copy is small: a name); false if the
 * region ending at `end` (or the body) is shorter. */
static bool take_bytes(cursor *c, size_t end, char *out, size_t n) {
  if (n > end - c->pos) {
    return false;
  }
  while (n > 0) {
    cursor_settle(c);
    if (c->index >= c->count) {
      return false;
    }
    size_t here = c->chunks[c->index].length - c->offset;
    size_t step = n < here ? n : here;
    if (out != NULL) {
      memcpy(out, c->chunks[c->index].ptr + c->offset, step);
      out += step;
    }
    c->offset += step;
    c->pos += step;
    n -= step;
  }
  return true;
}

static bool skip_bytes(cursor *c, size_t end, size_t n) { return take_bytes(c, end, NULL, n); }

static bool copy_bytes(cursor *c, size_t end, char *out, size_t n) { return take_bytes(c, end, out, n); }

/* A base-128 varint of at most 10 bytes whose value fits 64 bits (a 10th byte above 1 does not). */
static bool read_varint(cursor *c, size_t end, uint64_t *out) {
  uint64_t value = 0;
  for (unsigned shift = 0; shift < 70; shift += 7) {
    uint8_t byte;
    if (!read_byte(c, end, &byte)) {
      return false;
    }
    if (shift == 63 && byte > 1) {
      return false;
    }
    value |= (uint64_t)(byte & 0x7f) << shift;
    if ((byte & 0x80) == 0) {
      *out = value;
      return true;
    }
  }
  return false;
}

/* A field tag: field number (1..2^29-1) and wire type. */
static bool read_tag(cursor *c, size_t end, uint32_t *field, unsigned *wire_type) {
  uint64_t tag;
  if (!read_varint(c, end, &tag) || tag > UINT32_MAX) {
    return false;
  }
  *field = (uint32_t)(tag >> 3);
  *wire_type = (unsigned)(tag & 7);
  return *field != 0;
}

/* The length of a length-delimited field, which must fit in what is left of its region. */
static bool read_length(cursor *c, size_t end, size_t *length) {
  uint64_t value;
  if (!read_varint(c, end, &value) || value > (uint64_t)(end - c->pos)) {
    return false;
  }
  *length = (size_t)value;
  return true;
}

/* Skips one field's value by its wire type; groups and unknown wire types fail. */
static bool skip_value(cursor *c, size_t end, unsigned wire_type) {
  uint64_t ignored;
  size_t length;
  switch (wire_type) {
  case WT_VARINT:
    return read_varint(c, end, &ignored);
  case WT_FIXED64:
    return skip_bytes(c, end, 8);
  case WT_LEN:
    return read_length(c, end, &length) && skip_bytes(c, end, length);
  case WT_FIXED32:
    return skip_bytes(c, end, 4);
  default:
    return false;
  }
}

/* ----- The model spec ---------------------------------------------------------------------------------- */

/* What the merged ModelSpec says so far. */
typedef struct {
  size_t name_length; /* may exceed MAX_NAME_BYTES: then `name` holds nothing useful */
  char name[MAX_NAME_BYTES];
  bool version_set; /* the oneof holds `version` (an Int64Value, perhaps empty) */
  int64_t version;
  size_t label_length; /* the oneof holds `version_label` when > 0 (an empty label is no label) */
} model_spec;

static bool is_name_byte(char ch) {
  return (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') || ch == '.' ||
         ch == '_' || ch == '-';
}

/* google.protobuf.Int64Value, merged into spec->version. */
static bool parse_int64_value(cursor *c, size_t end, model_spec *spec) {
  while (c->pos < end) {
    uint32_t field;
    unsigned wire_type;
    if (!read_tag(c, end, &field, &wire_type)) {
      return false;
    }
    if (field == 1) {
      uint64_t value;
      if (wire_type != WT_VARINT || !read_varint(c, end, &value)) {
        return false;
      }
      spec->version = (int64_t)value;
    } else if (!skip_value(c, end, wire_type)) {
      return false;
    }
  }
  return true;
}

/* One occurrence of ModelSpec, merged into `spec`. */
static bool parse_model_spec(cursor *c, size_t end, model_spec *spec) {
  while (c->pos < end) {
    uint32_t field;
    unsigned wire_type;
    if (!read_tag(c, end, &field, &wire_type)) {
      return false;
    }
    size_t length;
    switch (field) {
    case 1: /* name */
      if (wire_type != WT_LEN || !read_length(c, end, &length)) {
        return false;
      }
      spec->name_length = length;
      if (length <= MAX_NAME_BYTES) {
        if (!copy_bytes(c, end, spec->name, length)) {
          return false;
        }
      } else if (!skip_bytes(c, end, length)) {
        return false;
      }
      break;
    case 2: /* version: Int64Value, in the oneof with version_label */
      if (wire_type != WT_LEN || !read_length(c, end, &length)) {
        return false;
      }
      if (!spec->version_set) {
        spec->version_set = true;
        spec->version = 0;
      }
      spec->label_length = 0;
      if (!parse_int64_value(c, c->pos + length, spec)) {
        return false;
      }
      break;
    case 4: /* version_label */
      if (wire_type != WT_LEN || !read_length(c, end, &length) || !skip_bytes(c, end, length)) {
        return false;
      }
      spec->label_length = length;
      spec->version_set = false;
      spec->version = 0;
      break;
    default: /* signature_name (3) and unknown fields */
      if (!skip_value(c, end, wire_type)) {
        return false;
      }
    }
  }
  return true;
}

/* The request message (L bytes from the cursor): every top-level field 1 merges into `spec`. */
static bool parse_request(cursor *c, size_t end, model_spec *spec, bool *spec_seen) {
  while (c->pos < end) {
    uint32_t field;
    unsigned wire_type;
    if (!read_tag(c, end, &field, &wire_type)) {
      return false;
    }
    if (field == 1) {
      size_t length;
      if (wire_type != WT_LEN || !read_length(c, end, &length)) {
        return false;
      }
      *spec_seen = true;
      if (!parse_model_spec(c, c->pos + length, spec)) {
        return false;
      }
    } else if (!skip_value(c, end, wire_type)) {
      return false;
    }
  }
  return true;
}

/* The route key for a spec, or 0 when the spec has no fast-path key. */
static size_t format_key(const model_spec *spec, char *out) {
  if (spec->name_length == 0 || spec->name_length > MAX_NAME_BYTES || spec->label_length > 0) {
    return 0;
  }
  for (size_t i = 0; i < spec->name_length; i++) {
    if (!is_name_byte(spec->name[i])) {
      return 0;
    }
  }
  if (spec->version_set && spec->version < 1) {
    return 0;
  }
  size_t n = 0;
  memcpy(out + n, "[\"", 2);
  n += 2;
  memcpy(out + n, spec->name, spec->name_length);
  n += spec->name_length;
  if (!spec->version_set) {
    memcpy(out + n, "\"]|[]|[]", 8);
    return n + 8;
  }
  memcpy(out + n, "\"]|[\"", 5);
  n += 5;
  char digits[20];
  size_t count = 0;
  for (uint64_t v = (uint64_t)spec->version; v > 0; v /= 10) {
    digits[count++] = (char)('0' + v % 10);
  }
  while (count > 0) {
    out[n++] = digits[--count];
  }
  memcpy(out + n, "\"]|[]", 5);
  return n + 5;
}

/* ----- Request headers ---------------------------------------------------------------------------------- */

/* The single value of a request header, if there is exactly one. */
static bool single_header(void *filter_envoy, const char *name, envoy_span *value) {
  module_span key = {name, strlen(name)};
  size_t count = 0;
  return envoy_dynamic_module_callback_http_get_header(filter_envoy, HEADER_TYPE_REQUEST, key, value, 0,
                                                       &count) &&
         count == 1;
}

static bool is_model_path(envoy_span path) {
  for (size_t i = 0; i < sizeof MODEL_PATHS / sizeof MODEL_PATHS[0]; i++) {
    size_t length = strlen(MODEL_PATHS[i]);
    if (path.length == length && memcmp(path.ptr, MODEL_PATHS[i], length) == 0) {
      return true;
    }
  }
  return false;
}

static bool is_grpc_content_type(envoy_span value) {
  size_t length = sizeof GRPC_CONTENT_TYPE - 1;
  if (value.length < length || memcmp(value.ptr, GRPC_CONTENT_TYPE, length) != 0) {
    return false;
  }
  return value.length == length || value.ptr[length] == '+' || value.ptr[length] == ';';
}

/* ----- Request body ---------------------------------------------------------------------------------- */

typedef enum {
  FRAME_INCOMPLETE, /* keep buffering */
  FRAME_DONE,       /* key written, or nothing to write: continue */
} frame_outcome;

/* Reads the first gRPC frame from `chunks`, writing the key when it is complete and names a model. */
static frame_outcome read_first_frame(void *filter_envoy, const filter_config *config,
                                      const envoy_span *chunks, size_t count, size_t total,
                                      bool end_of_stream) {
  cursor c = {chunks, count, 0, 0, 0};
  uint8_t prefix[GRPC_PREFIX_BYTES];
  for (size_t i = 0; i < GRPC_PREFIX_BYTES; i++) {
    if (!read_byte(&c, total, &prefix[i])) {
      return end_of_stream ? FRAME_DONE : FRAME_INCOMPLETE;
    }
  }
  if (prefix[0] != 0) {
    return FRAME_DONE; /* compressed: not read here */
  }
  size_t length =
      ((size_t)prefix[1] << 24) | ((size_t)prefix[2] << 16) | ((size_t)prefix[3] << 8) | (size_t)prefix[4];
  if (total - GRPC_PREFIX_BYTES < length) {
    if (end_of_stream) {
      return FRAME_DONE;
    }
    uint64_t limit = envoy_dynamic_module_callback_http_get_buffer_limit(filter_envoy);
    if (limit != 0 && (uint64_t)length + GRPC_PREFIX_BYTES > limit) {
      return FRAME_DONE; /* buffering it would make Envoy refuse the request */
    }
    return FRAME_INCOMPLETE;
  }
  model_spec spec;
  spec.name_length = 0;
  spec.version_set = false;
  spec.version = 0;
  spec.label_length = 0;
  bool spec_seen = false;
  if (!parse_request(&c, GRPC_PREFIX_BYTES + length, &spec, &spec_seen) || !spec_seen) {
    return FRAME_DONE;
  }
  char key[MAX_KEY_BYTES];
  size_t key_length = format_key(&spec, key);
  if (key_length == 0) {
    return FRAME_DONE;
  }
  module_span state_key = {config->key, config->key_length};
  module_span state_value = {key, key_length};
  if (envoy_dynamic_module_callback_http_set_filter_state_bytes(filter_envoy, state_key, state_value)) {
    envoy_dynamic_module_callback_http_clear_route_cache(filter_envoy);
  }
  return FRAME_DONE;
}

/* Fills `chunks` with the body so far (what was buffered, then what was just received). */
static bool body_chunks(void *filter_envoy, envoy_span *chunks, size_t buffered, size_t received) {
  if (buffered > 0 &&
      !envoy_dynamic_module_callback_http_get_body_chunks(filter_envoy, BODY_BUFFERED_REQUEST, chunks)) {
    return false;
  }
  if (received == 0) {
    return true;
  }
  envoy_span *rest = chunks + buffered;
  return envoy_dynamic_module_callback_http_get_body_chunks(filter_envoy, BODY_RECEIVED_REQUEST, rest);
}

static int on_request_body(void *filter_envoy, stream_state *stream, bool end_of_stream) {
  if (stream->phase != PHASE_WAITING) {
    return BODY_CONTINUE;
  }
  /* When the received data is the buffered data itself (an earlier filter let it go), count it once. */
  size_t buffered = 0;
  if (!envoy_dynamic_module_callback_http_received_buffered_request_body(filter_envoy)) {
    buffered = envoy_dynamic_module_callback_http_get_body_chunks_size(filter_envoy, BODY_BUFFERED_REQUEST);
  }
  size_t received =
      envoy_dynamic_module_callback_http_get_body_chunks_size(filter_envoy, BODY_RECEIVED_REQUEST);
  size_t count = buffered + received;
  envoy_span on_stack[STACK_CHUNKS];
  envoy_span *chunks = count <= STACK_CHUNKS ? on_stack : malloc(count * sizeof(envoy_span));
  frame_outcome outcome = FRAME_DONE;
  if (chunks != NULL && body_chunks(filter_envoy, chunks, buffered, received)) {
    size_t total = 0;
    for (size_t i = 0; i < count; i++) {
      total += chunks[i].length;
    }
    outcome = read_first_frame(filter_envoy, stream->config, chunks, count, total, end_of_stream);
  }
  if (chunks != on_stack) {
    free(chunks);
  }
  if (outcome == FRAME_INCOMPLETE) {
    return BODY_STOP_ITERATION_AND_BUFFER;
  }
  stream->phase = PHASE_PASS;
  return BODY_CONTINUE;
}

/* ----- Event hooks (exported to Envoy) ------------------------------------------------------------ */

const char *envoy_dynamic_module_on_program_init(void) { return MODULE_ABI_VERSION; }

void *envoy_dynamic_module_on_http_filter_config_new(void *config_envoy, envoy_span name, envoy_span config) {
  (void)config_envoy;
  size_t name_length = sizeof FILTER_NAME - 1;
  if (name.length != name_length || memcmp(name.ptr, FILTER_NAME, name_length) != 0) {
    return NULL; /* not a filter this module has */
  }
  if (config.length == 0 || config.length > MAX_STATE_KEY_BYTES || config.ptr == NULL) {
    return NULL; /* Envoy rejects the filter configuration */
  }
  filter_config *made = malloc(sizeof *made);
  if (made == NULL) {
    return NULL;
  }
  memcpy(made->key, config.ptr, config.length);
  made->key_length = config.length;
  return made;
}

void envoy_dynamic_module_on_http_filter_config_destroy(void *config) { free(config); }

void *envoy_dynamic_module_on_http_filter_new(void *config, void *filter_envoy) {
  (void)filter_envoy;
  stream_state *stream = malloc(sizeof *stream);
  if (stream != NULL) {
    stream->config = config;
    stream->phase = PHASE_PASS;
  }
  return stream;
}

void envoy_dynamic_module_on_http_filter_destroy(void *stream) { free(stream); }

int envoy_dynamic_module_on_http_filter_request_headers(void *filter_envoy, void *stream,
                                                        bool end_of_stream) {
  stream_state *state = stream;
  envoy_span path;
  envoy_span content_type;
  if (end_of_stream || !single_header(filter_envoy, ":path", &path) || !is_model_path(path) ||
      !single_header(filter_envoy, "content-type", &content_type) || !is_grpc_content_type(content_type)) {
    return HEADERS_CONTINUE;
  }
  state->phase = PHASE_WAITING;
  return HEADERS_STOP_ITERATION;
}

int envoy_dynamic_module_on_http_filter_request_body(void *filter_envoy, void *stream, bool end_of_stream) {
  return on_request_body(filter_envoy, stream, end_of_stream);
}

int envoy_dynamic_module_on_http_filter_request_trailers(void *filter_envoy, void *stream) {
  (void)filter_envoy;
  ((stream_state *)stream)->phase = PHASE_PASS; /* trailers before the first message: give up */
  return STATUS_CONTINUE;
}

int envoy_dynamic_module_on_http_filter_response_headers(void *filter_envoy, void *stream,
                                                         bool end_of_stream) {
  (void)filter_envoy;
  (void)stream;
  (void)end_of_stream;
  return STATUS_CONTINUE;
}

int envoy_dynamic_module_on_http_filter_response_body(void *filter_envoy, void *stream, bool end_of_stream) {
  (void)filter_envoy;
  (void)stream;
  (void)end_of_stream;
  return STATUS_CONTINUE;
}

int envoy_dynamic_module_on_http_filter_response_trailers(void *filter_envoy, void *stream) {
  (void)filter_envoy;
  (void)stream;
  return STATUS_CONTINUE;
}

void envoy_dynamic_module_on_http_filter_stream_complete(void *filter_envoy, void *stream) {
  (void)filter_envoy;
  (void)stream;
}

/* Hooks Envoy 1.40 requires every HTTP filter module to export; this filter starts no callouts, streams
 * or scheduled events and is not a terminal filter, so they are never called. */

void envoy_dynamic_module_on_http_filter_http_callout_done(void *filter_envoy, void *stream,
                                                           uint64_t callout_id, int result, void *headers,
                                                           size_t headers_size, void *body_chunks,
                                                           size_t body_chunks_size) {
  (void)filter_envoy;
  (void)stream;
  (void)callout_id;
  (void)result;
  (void)headers;
  (void)headers_size;
  (void)body_chunks;
  (void)body_chunks_size;
}

void envoy_dynamic_module_on_http_filter_http_stream_headers(void *filter_envoy, void *stream,
                                                             uint64_t stream_id, void *headers,
                                                             size_t headers_size, bool end_stream) {
  (void)filter_envoy;
  (void)stream;
  (void)stream_id;
  (void)headers;
  (void)headers_size;
  (void)end_stream;
}

void envoy_dynamic_module_on_http_filter_http_stream_data(void *filter_envoy, void *stream,
                                                          uint64_t stream_id, const void *data,
                                                          size_t data_count, bool end_stream) {
  (void)filter_envoy;
  (void)stream;
  (void)stream_id;
  (void)data;
  (void)data_count;
  (void)end_stream;
}

void envoy_dynamic_module_on_http_filter_http_stream_trailers(void *filter_envoy, void *stream,
                                                              uint64_t stream_id, void *trailers,
                                                              size_t trailers_size) {
  (void)filter_envoy;
  (void)stream;
  (void)stream_id;
  (void)trailers;
  (void)trailers_size;
}

void envoy_dynamic_module_on_http_filter_http_stream_complete(void *filter_envoy, void *stream,
                                                              uint64_t stream_id) {
  (void)filter_envoy;
  (void)stream;
  (void)stream_id;
}

void envoy_dynamic_module_on_http_filter_http_stream_reset(void *filter_envoy, void *stream,
                                                           uint64_t stream_id, int reason) {
  (void)filter_envoy;
  (void)stream;
  (void)stream_id;
  (void)reason;
}

void envoy_dynamic_module_on_http_filter_scheduled(void *filter_envoy, void *stream, uint64_t event_id) {
  (void)filter_envoy;
  (void)stream;
  (void)event_id;
}

void envoy_dynamic_module_on_http_filter_downstream_above_write_buffer_high_watermark(void *filter_envoy,
                                                                                      void *stream) {
  (void)filter_envoy;
  (void)stream;
}

void envoy_dynamic_module_on_http_filter_downstream_below_write_buffer_low_watermark(void *filter_envoy,
                                                                                     void *stream) {
  (void)filter_envoy;
  (void)stream;
}
