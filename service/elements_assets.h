#ifndef CV_ELEMENTS_ASSETS_H
#define CV_ELEMENTS_ASSETS_H

#include <stddef.h>

/* The card fields' static files (service/elements/), turned into arrays at
 * build time by service/elements/embed.sh; private to api_elements.c. Each
 * array holds the file's bytes and a NUL after them (not counted in _len). */
extern const unsigned char cv_asset_elements_js[];
extern const size_t cv_asset_elements_js_len;
extern const unsigned char cv_asset_frame_js[];
extern const size_t cv_asset_frame_js_len;
extern const unsigned char cv_asset_frame_css[];
extern const size_t cv_asset_frame_css_len;

#endif
