/* A complete lumen program in C: load a model, ask about an image, print the answer as it
 * streams in. Build (after `cargo build --release -p lumen-capi`):
 *   gcc -I capi/include examples/c/chat.c -L target/release -llumen_capi \
 *       -Wl,-rpath,"$PWD/target/release" -o chat
 *   ./chat tests/fixtures/qwen3vl-dense "What is in the picture?" tests/data/images/rocket.jpg
 */
#include <stdio.h>
#include <stdlib.h>

#include "lumen.h"

static int on_piece(const char *piece, size_t len, void *user) {
    size_t *pieces = user;
    *pieces += 1;
    fwrite(piece, 1, len, stdout);
    fflush(stdout);
    return 0; /* non-zero cancels */
}

static int fail(const char *what) {
    fprintf(stderr, "%s: %s\n", what, lumen_last_error());
    return 1;
}

int main(int argc, char **argv) {
    if (argc < 3) {
        fprintf(stderr, "usage: %s MODEL_DIR PROMPT [IMAGE] [BACKEND]\n", argv[0]);
        return 2;
    }
    const char *image = argc > 3 ? argv[3] : "";
    const char *backend = argc > 4 ? argv[4] : "auto";

    lumen_model *model = NULL;
    if (lumen_model_load(argv[1], backend, &model) != LUMEN_STATUS_OK) return fail("load");
    fprintf(stderr, "lumen %s: %s\n", lumen_version(), lumen_model_backend(model));

    lumen_request *req = NULL;
    if (lumen_request_new(&req) != LUMEN_STATUS_OK) return fail("request");
    if (image[0] && lumen_request_add_image_file(req, "user", image) != LUMEN_STATUS_OK) return fail("image");
    if (lumen_request_add_text(req, "user", argv[2]) != LUMEN_STATUS_OK) return fail("text");
    if (lumen_request_set_max_tokens(req, 16) != LUMEN_STATUS_OK) return fail("max tokens");

    size_t pieces = 0;
    lumen_generation *gen = NULL;
    if (lumen_generate(model, req, on_piece, &pieces, &gen) != LUMEN_STATUS_OK) return fail("generate");
    lumen_status status = lumen_generation_wait(gen);
    printf("\n");
    if (status != LUMEN_STATUS_OK) return fail("answer");
    fprintf(stderr, "%zu pieces\n", pieces);

    lumen_generation_free(gen);
    lumen_request_free(req);
    lumen_model_free(model);

    /* A freed or null handle is an error code, not a crash. */
    if (lumen_model_free(model) != LUMEN_STATUS_INVALID_HANDLE) return 3;
    fprintf(stderr, "freed model: %s\n", lumen_last_error());
    if (lumen_request_add_text(NULL, "user", "hi") != LUMEN_STATUS_INVALID_HANDLE) return 3;
    fprintf(stderr, "null request: %s\n", lumen_last_error());
    if (lumen_generation_wait(gen) != LUMEN_STATUS_INVALID_HANDLE) return 3;
    return 0;
}
