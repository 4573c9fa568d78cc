/* test_relay_redact.c: a processor's answer that echoes the card, in JSON,
 * form and plain text, comes out with neither the card number nor the
 * security code in it, the same length, and the rest untouched; other
 * cards the scanner recognises go too; ordinary numbers stay. */
#include "cardvault/relay_redact.h"

#include <stdlib.h>
#include <string.h>

#include "check.h"

static const struct cv_relay_sent sent = {{"4111111111111111"}, 1, {"737"}, 1};

/* Redacts a copy of in and compares with want; returns the count. */
static size_t redact_eq(const char *in, const char *want, const struct cv_relay_sent *s)
{
    size_t n = strlen(in);
    char *b = malloc(n + 1);
    memcpy(b, in, n + 1);
    size_t count = cv_relay_redact(b, n, s);
    if (strcmp(b, want) != 0) {
        fprintf(stderr, "  got  %s\n  want %s\n", b, want);
        CHECK(0);
    }
    free(b);
    return count;
}

static void json_echo_loses_card_and_code(void)
{
    CHECK(redact_eq("{\"id\":\"ch_1\",\"card\":{\"number\":\"4111111111111111\",\"cvc\":\"737\","
                    "\"exp\":\"03/31\"},\"amount\":1000}",
                    "{\"id\":\"ch_1\",\"card\":{\"number\":\"****************\",\"cvc\":\"***\","
                    "\"exp\":\"03/31\"},\"amount\":1000}",
                    &sent) >= 2);
}

static void json_escaped_digits_are_redacted_whole(void)
{
    redact_eq("{\"n\":\"\\u0034111111111111111\"}", "{\"n\":\"*********************\"}", &sent);
}

static void form_echo_loses_card_and_code(void)
{
    redact_eq("status=ok&number=4111111111111111&security_code=737&amount=737",
              "status=ok&number=****************&security_code=***&amount=***", &sent);
    redact_eq("number=4111+1111+1111+1111&n2=4111%201111%201111%201111",
              "number=****+****+****+****&n2=*************************", &sent);
}

static void plain_text_echo_with_separators(void)
{
    redact_eq("Declined: card 4111 1111 1111 1111 (cvc 737) expired",
              "Declined: card **** **** **** **** (cvc ***) expired", &sent);
    redact_eq("card 4111-1111-1111-1111.", "card ****-****-****-****.", &sent);
    /* separators the scanner does not take: the exact value still goes */
    redact_eq("pan=4111--1111--1111--1111", "pan=****--****--****--****", &sent);
    redact_eq("pan=4111/1111/1111/1111", "pan=****/****/****/****", &sent);
}

static void exact_pan_inside_longer_digits(void)
{
    redact_eq("ref=00"
              "4111111111111111"
              "999",
              "ref=00****************999", &sent);
}

static void other_cards_are_redacted_too(void)
{
    redact_eq("{\"backup\":\"5555 5555 5555 4444\",\"cvv2\":\"9999\"}",
              "{\"backup\":\"**** **** **** ****\",\"cvv2\":\"****\"}", NULL);
}

static void base64_and_utf16_echoes_go_whole(void)
{
    /* "4111111111111111" in base64, inside a JSON string */
    redact_eq("{\"raw\":\"NDExMTExMTExMTExMTExMQ==\"}", "{\"raw\":\"**********************==\"}",
              NULL);
    static const char le[] =
        "n=4\0001\0001\0001\0001\0001\0001\0001\0001\0001\0001\0001\0001\0001\0001\0001\000.";
    char b[sizeof(le)];
    memcpy(b, le, sizeof(le));
    CHECK(cv_relay_redact(b, sizeof(le) - 1, NULL) >= 1);
    for (size_t i = 2; i < sizeof(le) - 2; i++)
        CHECK(b[i] == '*' || b[i] == '\0');
    size_t digits = 0;
    for (size_t i = 0; i < sizeof(le) - 1; i++)
        digits += b[i] >= '0' && b[i] <= '9';
    CHECK_EQ_INT(digits, 0);
}

static void cvc_only_as_a_whole_run(void)
{
    redact_eq("amount=7370&id=1737&x=737", "amount=7370&id=1737&x=***", &sent);
}

static void ordinary_answer_is_untouched(void)
{
    const char *in = "{\"id\":\"ch_3MmlLrLkdIwHu7ix0snN0B15\",\"amount\":1099,\"status\":"
                     "\"succeeded\",\"created\":1679090539,\"last4\":\"1111\"}";
    CHECK_EQ_INT(redact_eq(in, in, &sent), 0);
    CHECK_EQ_INT(redact_eq("", "", &sent), 0);
}

static void two_cards_sent_both_redacted(void)
{
    struct cv_relay_sent two = {{"4111111111111111", "5555555555554444"}, 2, {"123", "4567"}, 2};
    redact_eq("a=4111111111111111 b=5555555555554444 c=123 d=4567",
              "a=**************** b=**************** c=*** d=****", &two);
}

int main(void)
{
    RUN(json_echo_loses_card_and_code);
    RUN(json_escaped_digits_are_redacted_whole);
    RUN(form_echo_loses_card_and_code);
    RUN(plain_text_echo_with_separators);
    RUN(exact_pan_inside_longer_digits);
    RUN(other_cards_are_redacted_too);
    RUN(base64_and_utf16_echoes_go_whole);
    RUN(cvc_only_as_a_whole_run);
    RUN(ordinary_answer_is_untouched);
    RUN(two_cards_sent_both_redacted);
    return check_summary("relay_redact");
}
