import matplotlib.pyplot as plt

x = [15, 21, 8, 40, 6, 34]
y = [49, 44, 46, 37, 21, 34]
fig, ax = plt.subplots(figsize=(6.4, 4.8))
ax.scatter(x, y, color="#55A868")
ax.set_title("Height against weight")
ax.set_xlabel("x")
ax.set_ylabel("y")
plt.tight_layout()
plt.show()
