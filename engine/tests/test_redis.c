/* corral engine tests: the parts of the Redis backend that need no server
 * (signing, urls, a refused connection). The backend against a real server
 * is tested by spec/redis_*_spec.lua. In a build without the backend the
 * tests have nothing to check and pass. */
#include <string.h>

#include "test.h"

#ifdef CORRAL_REDIS
void test_redis_hmac(void) {
  /* RFC 4231, test case 2 */
  static const unsigned char want[CR_HMAC_LEN] = {
    0x5b, 0xdc, 0xc1, 0x46, 0xbf, 0x60, 0x75, 0x4e, 0x6a, 0x04, 0x24, 0x26, 0x08, 0x95, 0x75, 0xc7,
    0x5a, 0x00, 0x3f, 0x08, 0x9d, 0x27, 0x39, 0x83, 0x9d, 0xec, 0x58, 0xb9, 0x64, 0xec, 0x38, 0x43};
  const char *data = "what do ya want for nothing?";
  unsigned char mac[CR_HMAC_LEN];
  cr_hmac_sha256("Jefe", 4, data, strlen(data), mac);
  CHECK(memcmp(mac, want, CR_HMAC_LEN) == 0);
  CHECK(cr_hmac_check("Jefe", 4, data, strlen(data), want, CR_HMAC_LEN));
  CHECK(!cr_hmac_check("jefe", 4, data, strlen(data), want, CR_HMAC_LEN));
  CHECK(!cr_hmac_check("Jefe", 4, data, strlen(data), want, CR_HMAC_LEN - 1));
}

void test_redis_url_errors(void) {
  cr_redis_t *c = (cr_redis_t *)1;
  char err[512];
  CHECK_EQ(cr_redis_open("http://127.0.0.1", 1, &c, err, sizeof err), CR_EINVAL);
  CHECK(c == NULL);
  CHECK(strstr(err, "not a redis url") != NULL);
  CHECK_EQ(cr_redis_open("redis://127.0.0.1:99999", 1, &c, err, sizeof err), CR_EINVAL);
  CHECK_EQ(cr_redis_open("redis://", 1, &c, err, sizeof err), CR_EINVAL);
  /* port 1 on loopback: nothing listens there */
  CHECK_EQ(cr_redis_open("redis://:secret@127.0.0.1:1/pool", 1, &c, err, sizeof err), CR_ECONN);
  CHECK(strstr(err, "redis://127.0.0.1:1/pool: cannot connect: connection refused") == err);
  CHECK(strstr(err, "secret") == NULL);
  CHECK(strcmp(cr_err_kind(CR_EAUTH), "AuthError") == 0);
  CHECK(strcmp(cr_err_kind(CR_ECONN), "ConnectionError") == 0);
}
#else
void test_redis_hmac(void) {}
void test_redis_url_errors(void) {}
#endif
